/**
 * The end of a service's life: on SIGINT or SIGTERM, its parts stop in order and the process exits.
 * @module
 */
import { describeError, type Logger } from "./log.ts";

/**
 * Runs `steps` in order on SIGINT or SIGTERM, then exits 0; exits 1 if they take over `timeoutMs`.
 */
export function onShutdown(
  log: Logger,
  steps: Array<() => Promise<void>>,
  timeoutMs = 10_000,
): void {
  let started = false;
  async function shutdown(signal: string): Promise<void> {
    if (started) return;
    started = true;
    log.info("shutting down", { signal });
    const timer = setTimeout(() => {
      log.error("shutdown took too long, exiting", { timeout_ms: timeoutMs });
      Deno.exit(1);
    }, timeoutMs);
    for (const step of steps) {
      await step().catch((error) =>
        log.error("shutdown step failed", { error: describeError(error) })
      );
    }
    clearTimeout(timer);
    log.info("stopped");
    Deno.exit(0);
  }
  Deno.addSignalListener("SIGINT", () => shutdown("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => shutdown("SIGTERM"));
}
