/**
 * Deadlines on the broker's replies: an RPC whose answer never comes (a node lost mid-call, a queue
 * between leaders) must fail, so that the connection can be given up and another node tried,
 * rather than hang a service for good.
 * @module
 */

/** The broker did not answer within its deadline. */
export class BrokerTimeoutError extends Error {
  override name = "BrokerTimeoutError";
}

/**
 * Resolves or rejects as `promise` does, or rejects with a {@linkcode BrokerTimeoutError} after
 * `ms` milliseconds; `what` names the call for the error, as in "Broker did not answer within
 * 10000 ms to confirm a publish".
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BrokerTimeoutError(`Broker did not answer within ${ms} ms to ${what}`)),
      ms,
    );
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Resolves as `opening` (a connection or a channel being opened) does, or rejects as
 * {@linkcode withDeadline} does; what opens after the deadline is closed at once rather than left
 * open with no one to close it.
 */
export async function openedWithDeadline<T extends { close(): Promise<void> }>(
  opening: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  try {
    return await withDeadline(opening, ms, what);
  } catch (error) {
    opening.then((late) => late.close(), () => {}).catch(() => {});
    throw error;
  }
}
