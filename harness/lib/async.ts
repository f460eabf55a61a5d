/**
 * Waiting in the harness: polling a condition with a deadline, a promise with a deadline, a pool
 * of calls, and a pause for pacing what a scenario does (never for standing in for a condition).
 * @module
 */

/** A polling deadline for {@linkcode waitFor}. */
export interface WaitOptions {
  /** How long to keep polling, in milliseconds. @default {15000} */
  timeoutMs?: number;
  /** Milliseconds between two polls. @default {50} */
  intervalMs?: number;
}

/**
 * Polls `condition` until it returns a value other than `undefined` or `false`, and returns it.
 * @throws {Error} with `what` and the last value seen, when the deadline passes
 */
export async function waitFor<T>(
  what: string,
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const { timeoutMs = 15_000, intervalMs = 50 } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}: last saw ${String(last)}`,
      );
    }
    await sleep(intervalMs);
  }
}

/**
 * Resolves or rejects as `promise` does, or rejects after `ms` milliseconds naming `what`.
 * For the broker's confirms and replies, which have no deadline of their own.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Maps `items` with `fn`, running at most `limit` calls at once, keeping the order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Resolves after `ms` milliseconds (at once for 0 or less): paces what a scenario does. */
export function sleep(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
