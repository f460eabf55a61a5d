/**
 * How long to wait before trying again after failures, and how to say so in the log: the one
 * backoff that reconnecting to the broker, reaching the database, probing an outage, fetching a
 * key set and retrying a webhook delivery all use, and the one "warn at the first failure of a
 * streak, say when it ends" rule for their log lines.
 * @module
 */
import { describeError, type Logger } from "./log.ts";

/** Options for {@linkcode backoffDelayMs}. */
export interface BackoffOptions {
  /** The delay after the first failure, before jitter, in milliseconds. */
  initialDelayMs: number;
  /** The longest delay, before jitter, in milliseconds. */
  maxDelayMs: number;
  /** Take the whole delay rather than a random half to all of it. @default {false} */
  exact?: boolean;
  /** A number in [0, 1), for the jitter. @default {Math.random} */
  random?: () => number;
}

/**
 * The delay after the `failures`th failure in a row: `initialDelayMs` doubled per failure up to
 * `maxDelayMs`, of which a random half to all is taken ("equal jitter") so that clients that
 * failed together do not come back together.
 * @throws {RangeError} when `failures` is not a positive integer
 */
export function backoffDelayMs(failures: number, options: BackoffOptions): number {
  const { initialDelayMs, maxDelayMs, exact = false, random = Math.random } = options;
  if (!Number.isInteger(failures) || failures < 1) {
    throw new RangeError(
      `Cannot compute a backoff as failures must be a positive integer: current value is ${failures}`,
    );
  }
  const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(failures - 1, 30));
  return exact ? ceiling : ceiling / 2 + random() * ceiling / 2;
}

/** A run of failures of one task, logged once when it starts and once when it ends. */
export interface FailureStreak {
  /** Failures since the last success. */
  readonly failures: number;
  /** Counts a failure; the first of a streak is logged as a warning with its error. */
  failed(error: unknown, fields?: Record<string, unknown>): number;
  /** Ends the streak, logged at info with how many failures it had, if there was one. */
  succeeded(fields?: Record<string, unknown>): void;
}

/** The two lines of a {@linkcode FailureStreak}. */
export interface StreakMessages {
  /** The warning at a streak's first failure: "cannot reach broker, retrying". */
  failing: string;
  /** The line when it ends: "reached the broker again". */
  recovered: string;
}

/**
 * Logs a task's failures in `log` as one line per streak rather than one per attempt, so that a
 * dead dependency cannot flood the log, and the end of each streak.
 */
export function failureStreak(log: Logger, messages: StreakMessages): FailureStreak {
  let failures = 0;
  return {
    get failures() {
      return failures;
    },
    failed(error, fields = {}) {
      if (failures++ === 0) log.warn(messages.failing, { ...fields, error: describeError(error) });
      return failures;
    },
    succeeded(fields = {}) {
      if (failures > 0) log.info(messages.recovered, { ...fields, failures });
      failures = 0;
    },
  };
}
