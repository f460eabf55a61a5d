/**
 * When a webhook delivery is tried again after a failed attempt: growing delays with jitter, the
 * first within a second, capped so that two attempts are never more than a minute apart, for at
 * least a day; then the delivery has failed.
 * @module
 */

/** Options for {@linkcode retryDelayMs} and {@linkcode nextAttemptAt}. */
export interface BackoffOptions {
  /** The delay after the first failure, before jitter, in milliseconds. @default {1000} */
  initialDelayMs?: number;
  /**
   * The longest delay, before jitter, in milliseconds. Below a minute by the sender's poll (1 s)
   * and more, so that two attempts start less than a minute apart. @default {55000}
   */
  maxDelayMs?: number;
  /** How long after the notification attempts go on, in milliseconds. @default {86400000 (24 h)} */
  giveUpAfterMs?: number;
  /** A number in [0, 1), for the jitter. @default {Math.random} */
  random?: () => number;
}

/**
 * The delay after the `failures`th failed attempt: `initialDelayMs` doubled per failure up to
 * `maxDelayMs`, of which a random half to all is taken ("equal jitter"), so that deliveries that
 * failed together do not come back together.
 * @throws {RangeError} when `failures` is not a positive integer
 */
export function retryDelayMs(failures: number, options: BackoffOptions = {}): number {
  const { initialDelayMs = 1000, maxDelayMs = 55_000, random = Math.random } = options;
  if (!Number.isInteger(failures) || failures < 1) {
    throw new RangeError(
      `Cannot compute a retry delay as failures must be a positive integer: current value is ${failures}`,
    );
  }
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(failures - 1, 30));
  return ceiling / 2 + random() * ceiling / 2;
}

/**
 * When to try a delivery recorded at `createdAt` again after its `failures`th failure at `now`
 * (milliseconds since the epoch); undefined once `giveUpAfterMs` has passed since `createdAt`: it
 * has failed.
 */
export function nextAttemptAt(
  failures: number,
  times: { createdAt: number; now: number },
  options: BackoffOptions = {},
): number | undefined {
  const { giveUpAfterMs = 86_400_000 } = options;
  if (times.now - times.createdAt >= giveUpAfterMs) return undefined;
  return times.now + retryDelayMs(failures, options);
}
