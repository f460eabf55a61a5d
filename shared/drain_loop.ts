/**
 * A drain loop: a background worker that takes work from the database in rounds, as the outbox
 * relay and the webhook sender do. A round runs at once when something wakes the loop (a commit
 * that added work, a reconnect, a slot coming free) and otherwise after a poll interval, which
 * finds the work nothing woke it for. While the database is out the loop pauses until it answers
 * again, and a round's failures are logged once per streak. `stop()` ends it between rounds.
 * @module
 */
import type { Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";
import { failureStreak, type StreakMessages } from "./backoff.ts";

/** Options for {@linkcode startDrainLoop}. */
export interface DrainLoopOptions {
  log: Logger;
  /** The warning at the first failed round of a streak, and the line when a round succeeds again. */
  messages: StreakMessages;
  /** The store's outages: a round that fails for one waits for its end and runs again. */
  outages: OutageWatch;
  /** How long the loop sleeps when nothing wakes it, in milliseconds. */
  pollIntervalMs: number;
  /**
   * Whether a round could do anything now (the broker is connected, a slot is free). A round it
   * skips neither ends nor extends a streak of failures, and a wake does not rerun it.
   * @default {always}
   */
  canRun?: () => boolean;
  /**
   * Whether `stop()` lets a sleeping loop run one last round (the relay publishes what is pending)
   * rather than ending it at once. A round in hand is always finished, never followed by another.
   * @default {false}
   */
  lastRoundOnStop?: boolean;
}

/** A running drain loop. */
export interface DrainLoop {
  /** Runs a round now, or as soon as the one in hand ends. */
  wake(): void;
  /** Stops the loop: cuts a wait for the end of an outage short, and resolves once it has ended. */
  stop(): Promise<void>;
}

/**
 * Runs `round` now and again until `stop()`. A round resolves true when it took all it could and
 * more may be waiting (a full batch): the next one runs at once. Otherwise the loop sleeps until
 * woken or `options.pollIntervalMs` has passed; a wake during a round runs the next at once, unless
 * the round failed, so that a failing round is retried at the poll rather than at every commit.
 * `round` gets the loop's stop signal and must be safe to run again after an outage cut it short.
 * @throws {RangeError} when `pollIntervalMs` is not positive
 */
export function startDrainLoop(
  round: (stopping: AbortSignal) => Promise<boolean>,
  options: DrainLoopOptions,
): DrainLoop {
  const { log, messages, outages, pollIntervalMs, canRun = () => true } = options;
  const { lastRoundOnStop = false } = options;
  if (!(pollIntervalMs > 0)) {
    throw new RangeError(
      `Cannot start a drain loop as pollIntervalMs must be positive: current value is ${pollIntervalMs}`,
    );
  }
  const streak = failureStreak(log, messages);
  // Aborts a wait for the end of an outage; with the database up, a round in hand still finishes.
  const stopping = new AbortController();
  let wakeUp: (() => void) | undefined;
  // A wake during a round must not be lost, or new work would wait a whole poll interval.
  let woken = false;
  function wake(): void {
    woken = true;
    wakeUp?.();
  }

  async function run(): Promise<void> {
    while (lastRoundOnStop || !stopping.signal.aborted) {
      woken = false;
      let more = false;
      if (canRun()) {
        try {
          more = await outages.retryThrough(() => round(stopping.signal), stopping.signal);
          streak.succeeded();
        } catch (error) {
          // Stopped while paused by an outage: the work stays where it is for the next run.
          if (error === stopping.signal.reason) return;
          streak.failed(error);
        }
      }
      if (stopping.signal.aborted) return;
      if (more || (woken && streak.failures === 0 && canRun())) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollIntervalMs);
        wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wakeUp = undefined;
    }
  }
  const running = run();

  return {
    wake,
    async stop() {
      stopping.abort();
      wake();
      await running;
    },
  };
}
