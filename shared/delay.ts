/**
 * A wait that a shutdown can cut short.
 * @module
 */

/** Resolves after `ms` milliseconds, or at once when `signal` aborts (it never rejects). */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
