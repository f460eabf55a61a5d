/**
 * A wait that a shutdown can cut short.
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or at once when `signal` aborts (it never rejects). Its abort
 * listener goes when the wait ends: a task that waits on its service's signal every second would
 * otherwise leave one behind per round, about a kilobyte each, for the life of the process.
 */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const end = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", end);
      resolve();
    };
    const timer = setTimeout(end, ms);
    signal.addEventListener("abort", end, { once: true });
  });
}
