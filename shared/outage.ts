/**
 * Outages of the database, told apart from failures of a message: while the database cannot be
 * reached or written, a service's consumers and outbox relay pause instead of spending the retry
 * budget of messages that did nothing wrong (MassTransit's kill switch, NServiceBus's critical
 * error). One watch per store: the first failure that is an outage starts a pause, a probe with
 * capped exponential backoff ends it, and everything waiting in {@linkcode OutageWatch.recovered}
 * goes on.
 * @module
 */
import type { Store } from "./store.ts";
import { describeError, type Logger } from "./log.ts";
import { counter } from "./metrics.ts";
import { delay as wait } from "./delay.ts";
import { backoffDelayMs, failureStreak } from "./backoff.ts";

/** The log line of a pause's start, as tests and scenarios look for it. */
export const PAUSED_MSG = "database unavailable, pausing consumers and outbox relay";
/** The log line of a pause's end. */
export const RESUMED_MSG = "database answers again, resuming";

/** Options for {@linkcode watchOutages}. */
export interface OutageOptions {
  log: Logger;
  /** The wait before the first probe of an outage, in milliseconds. @default {100} */
  initialDelayMs?: number;
  /** The longest wait between two probes, in milliseconds. @default {2000} */
  maxDelayMs?: number;
  /**
   * Waits `ms` milliseconds, or less if `signal` aborts: tests pass a fake clock here.
   * @default {a timer}
   */
  delay?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** A store's outages, as a running service sees them. */
export interface OutageWatch {
  /** Why the service is paused, while it is; undefined while the database works. */
  readonly reason: string | undefined;
  /** How long a client should wait before it asks again, in seconds: the current probe interval. */
  readonly retryAfterSeconds: number;
  /**
   * Says whether `failure` is an outage, and if so starts a pause (one per outage, however many
   * failures report it). A failure the store does not recognise counts as an outage only if the
   * database then fails a probe too: a handler that fails while the database answers is the
   * message's fault.
   */
  report(failure: unknown): Promise<boolean>;
  /** Resolves at once while there is no outage, else when it ends; rejects when `signal` aborts. */
  recovered(signal?: AbortSignal): Promise<void>;
  /**
   * Runs `fn`, and while it fails for an outage, waits for the end of the outage and runs it again;
   * any other failure is thrown. `fn` must be safe to repeat, as a transaction is.
   */
  retryThrough<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T>;
  /** Calls `listener(true)` when a pause begins, `listener(false)` when it ends; returns an off switch. */
  onChange(listener: (paused: boolean) => void): () => void;
  /** Stops probing; resolves once a probe under way has finished. */
  stop(): Promise<void>;
}

interface Outage {
  reason: string;
  /** `performance.now()` when it began, and up to when its time was counted in the metrics. */
  began: number;
  counted: number;
  ended: Promise<void>;
  end: () => void;
}

const pauses = counter(
  "pauses_total",
  "Times the consumers and the outbox relay paused for an outage (cause: what was out)",
  ["cause"],
);
const pausedSeconds = counter(
  "paused_seconds_total",
  "Seconds the consumers and the outbox relay spent paused for an outage",
  ["cause"],
);

const LABELS = { cause: "database" } as const;
// At 0 from the start, so that a service that never paused shows it, and the first pause's seconds
// count as an increase.
pauses.inc(LABELS, 0);
pausedSeconds.inc(LABELS, 0);

/**
 * How long a passed probe vouches for the database, in milliseconds: a batch handled one event at a
 * time, with a fifth of its events failing, would otherwise probe after each of them.
 */
const PROBE_VOUCHES_MS = 1000;

/** Watches `store` for outages; see the module doc. */
export function watchOutages(store: Store, options: OutageOptions): OutageWatch {
  const { log, initialDelayMs = 100, maxDelayMs = 2000, delay = wait } = options;
  if (!(initialDelayMs > 0) || !(maxDelayMs >= initialDelayMs)) {
    throw new RangeError(
      `Cannot watch outages as the delays must satisfy 0 < initialDelayMs <= maxDelayMs: current values are ${initialDelayMs} and ${maxDelayMs}`,
    );
  }
  const listeners = new Set<(paused: boolean) => void>();
  const stopping = new AbortController();
  let outage: Outage | undefined;
  const backoff = { initialDelayMs, maxDelayMs, exact: true };
  /** The waits before probes since the backoff last started over. */
  let probeWaits = 0;
  function nextDelayMs(): number {
    return backoffDelayMs(probeWaits + 1, backoff);
  }
  const streak = failureStreak(log, { failing: PAUSED_MSG, recovered: RESUMED_MSG });
  let lastEnded = -Infinity;
  let probeLoop: Promise<void> = Promise.resolve();
  let probing: Promise<void> | undefined;
  let lastPassed = -Infinity;

  function begin(failure: unknown): void {
    const reason = describeError(failure);
    if (outage) {
      outage.reason = reason;
      return;
    }
    // A database that fails again right after a probe succeeded keeps the backoff it had reached,
    // so a probe that passes while real work fails cannot make a tight pause-resume loop.
    if (performance.now() - lastEnded > maxDelayMs) probeWaits = 0;
    const { promise, resolve } = Promise.withResolvers<void>();
    const now = performance.now();
    outage = { reason, began: now, counted: now, ended: promise, end: resolve };
    pauses.inc(LABELS);
    streak.failed(failure);
    for (const listener of listeners) listener(true);
    probeLoop = probeUntilAnswered(outage);
  }

  async function probeUntilAnswered(current: Outage): Promise<void> {
    while (true) {
      await delay(nextDelayMs(), stopping.signal);
      probeWaits++;
      countPausedTime(current);
      if (stopping.signal.aborted) return;
      try {
        await probe();
        break;
      } catch (error) {
        // Counted, not logged: the pause's first line said why, and its last will say it ended.
        current.reason = describeError(error);
        streak.failed(error);
      }
    }
    outage = undefined;
    lastEnded = performance.now();
    streak.succeeded({ paused_ms: Math.round(lastEnded - current.began) });
    for (const listener of listeners) listener(false);
    current.end();
  }

  /** Adds the time since the last count, so that a long pause shows in the metric as it goes. */
  function countPausedTime(current: Outage): void {
    const now = performance.now();
    pausedSeconds.inc(LABELS, (now - current.counted) / 1000);
    current.counted = now;
  }

  /** Probes the database; the failures reported meanwhile share one probe. */
  function probe(): Promise<void> {
    probing ??= store.probe().then(() => void (lastPassed = performance.now())).finally(() =>
      probing = undefined
    );
    return probing;
  }

  async function report(failure: unknown): Promise<boolean> {
    if (!outage && !store.isOutage(failure)) {
      try {
        if (performance.now() - lastPassed > PROBE_VOUCHES_MS) await probe();
        return false;
      } catch (probeFailure) {
        failure = probeFailure;
      }
    }
    begin(failure);
    return true;
  }

  function recovered(signal?: AbortSignal): Promise<void> {
    const current = outage;
    if (!current) return Promise.resolve();
    if (!signal) return current.ended;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const abort = () => reject(signal.reason);
      signal.addEventListener("abort", abort, { once: true });
      current.ended.then(() => {
        signal.removeEventListener("abort", abort);
        resolve();
      });
    });
  }

  return {
    get reason() {
      return outage?.reason;
    },
    get retryAfterSeconds() {
      return outage ? Math.max(1, Math.ceil(nextDelayMs() / 1000)) : 1;
    },
    report,
    recovered,
    async retryThrough(fn, signal) {
      while (true) {
        await recovered(signal);
        try {
          return await fn();
        } catch (error) {
          if (!(await report(error))) throw error;
        }
      }
    },
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    async stop() {
      stopping.abort();
      await probeLoop;
    },
  };
}
