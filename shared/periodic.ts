/**
 * A task a service runs again and again in the background, such as deleting old rows or expiring
 * overdue orders: one round at a time, a pause between rounds, and one log line per streak of
 * failures rather than one per round.
 * @module
 */
import type { Logger } from "./log.ts";
import { failureStreak } from "./backoff.ts";
import { delay } from "./delay.ts";

/** A running background task. */
export interface Periodic {
  /** Finishes the round in hand and stops. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startPeriodic}. */
export interface PeriodicOptions {
  /** The pause after each round, in milliseconds. */
  intervalMs: number;
  log: Logger;
  /** What a round does, as a verb phrase for the log: "delete expired rows". */
  name: string;
  /** Fields for that warning. @default {none} */
  fields?: Record<string, unknown>;
}

/**
 * Runs `task` now, then `options.intervalMs` after each round ends, until `stop()`. A round that
 * throws is retried at the next one; the database it needs is reported sick by the consumers.
 * @throws {RangeError} when `intervalMs` is not positive
 */
export function startPeriodic(task: () => Promise<void>, options: PeriodicOptions): Periodic {
  const { intervalMs, log, name, fields = {} } = options;
  if (!(intervalMs > 0)) {
    throw new RangeError(
      `Cannot start a periodic task as intervalMs must be positive: current value is ${intervalMs}`,
    );
  }
  const stopping = new AbortController();
  const streak = failureStreak(log, {
    failing: `cannot ${name}, will retry`,
    recovered: `recovered: ${name}`,
  });
  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        await task();
        streak.succeeded(fields);
      } catch (error) {
        streak.failed(error, fields);
      }
      await delay(intervalMs, stopping.signal);
    }
  }
  const running = run();
  return {
    async stop() {
      stopping.abort();
      await running;
    },
  };
}
