/**
 * The webhook sender: delivers pending webhook deliveries (see `webhook_deliveries.ts`) to
 * `NOTIFY_WEBHOOK_URL` as Standard Webhooks, many at once but boundedly, each claimed under a
 * lease so that two instances on one PostgreSQL never send one delivery at the same time.
 *
 * A 2xx answer delivers; another status, no answer within the timeout or no connection is tried
 * again later (`webhook_backoff.ts`), for a day, then the delivery has failed. Every attempt of a
 * delivery sends the body its row holds under its `webhook-id`, signed afresh: a crash mid-attempt
 * sends it again, the same, once the lease is over (at once on SQLite, whose leases a start ends).
 *
 * It runs beside the consumers and never in their transactions: a slow or dead receiver holds up
 * only its own deliveries. It is a drain loop (`drain_loop.ts`): commits that enqueued deliveries,
 * a slot coming free and a retry coming due wake it; a poll finds the rest (another instance's
 * expired leases). During an outage of the database it pauses, as the consumers do.
 * @module
 */
import type { Store, Tx } from "../shared/store.ts";
import { describeError, type Logger } from "../shared/log.ts";
import type { OutageWatch } from "../shared/outage.ts";
import { counter } from "../shared/metrics.ts";
import { failureStreak } from "../shared/backoff.ts";
import { startDrainLoop } from "../shared/drain_loop.ts";
import { webhookHeaders, webhookSigner } from "./standard_webhook.ts";
import { nextAttemptAt, type WebhookBackoffOptions } from "./webhook_backoff.ts";
import {
  claimDeliveries,
  type ClaimedDelivery,
  markAttemptFailed,
  markDelivered,
  releaseLeases,
  watchWebhookDeliveries,
  WEBHOOK_TOPIC,
} from "./webhook_deliveries.ts";

/** Options for {@linkcode startWebhookSender}. */
export interface WebhookSenderOptions {
  /** Where deliveries are POSTed. */
  url: string;
  /** The key every attempt is signed with: the bytes of the `whsec_` secret. */
  key: Uint8Array;
  log: Logger;
  /** The store's outages, which pause the sender. */
  outages: OutageWatch;
  /** Attempts in flight at once. @default {32} */
  maxInFlight?: number;
  /** How long an attempt waits for an answer, in milliseconds. @default {10000} */
  timeoutMs?: number;
  /**
   * How long a claim keeps other instances off a delivery, in milliseconds: past the timeout, so
   * that a lease outlives its attempt. @default {30000}
   */
  leaseMs?: number;
  /** How often to look for due deliveries nothing woke the sender for, in milliseconds. @default {1000} */
  pollIntervalMs?: number;
  /** The retry schedule. @default {see `webhook_backoff.ts`} */
  backoff?: WebhookBackoffOptions;
}

/** A running sender. */
export interface WebhookSender {
  /** Stops claiming, cuts the attempts in flight short and gives their deliveries back. */
  stop(): Promise<void>;
}

/** How an attempt ended, as the attempts metric counts it. */
type Outcome = "delivered" | "refused" | "timeout" | "unreachable";

const attemptsMade = counter(
  "webhook_attempts_total",
  "Attempts to deliver a notification to the webhook, by outcome: delivered (a 2xx), " +
    "refused (another status), timeout (no answer within 10 s), unreachable (no connection)",
  ["outcome"],
);
const deliveriesEnded = counter(
  "webhook_deliveries_total",
  "Notifications whose webhook delivery ended, by status: delivered, or failed after retrying " +
    "for a day",
  ["status"],
);

/** Starts delivering `store`'s pending webhook deliveries. */
export function startWebhookSender(store: Store, options: WebhookSenderOptions): WebhookSender {
  const {
    url,
    log,
    outages,
    maxInFlight = 32,
    timeoutMs = 10_000,
    leaseMs = 30_000,
    pollIntervalMs = 1000,
    backoff = {},
  } = options;
  if (!(maxInFlight >= 1) || !(timeoutMs > 0) || !(leaseMs > timeoutMs)) {
    throw new RangeError(
      `Cannot start the webhook sender as it needs maxInFlight >= 1 and leaseMs > timeoutMs > 0: current values are ${maxInFlight}, ${leaseMs} and ${timeoutMs}`,
    );
  }
  const signer = webhookSigner(options.key);
  // Cuts the attempts in flight short; they outlive the round that started them.
  const stopping = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const retryTimers = new Set<ReturnType<typeof setTimeout>>();
  // One line per streak: a dead receiver must not write one per attempt.
  const receiver = failureStreak(log, {
    failing: "cannot deliver to the webhook, will retry",
    recovered: "webhook receiver answers again",
  });
  // One process owns a SQLite file: a lease there can only be a crashed run's.
  let leasesToRelease = store.dialect === "sqlite";

  // Rounds: claim what is due for the free slots; filling them all means more may be due.
  const loop = startDrainLoop(claimAndSend, {
    log,
    outages,
    pollIntervalMs,
    messages: {
      failing: "cannot claim webhook deliveries, will retry",
      recovered: "webhook sender recovered",
    },
    canRun: () => inFlight.size < maxInFlight,
  });
  // What wakes it: the commit of every transaction that enqueued deliveries; in `attempt`, a slot
  // coming free and a retry coming due.
  const stopListening = store.listen(WEBHOOK_TOPIC, loop.wake);
  watchWebhookDeliveries(store);
  // At 0 from the start, so that the first failure shows as an increase to an alert's increase().
  deliveriesEnded.inc({ status: "failed" }, 0);

  /** Claims what is due for the free slots and starts their attempts; true if it filled them. */
  async function claimAndSend(signal: AbortSignal): Promise<boolean> {
    if (leasesToRelease) {
      try {
        await outages.retryThrough(() => store.transaction(releaseLeases), signal);
      } catch (error) {
        // Stopped while paused by an outage: nothing was claimed.
        if (error === signal.reason) throw error;
        log.warn("cannot release webhook leases", { error: describeError(error) });
      }
      leasesToRelease = false;
      // Stopped while releasing: claim nothing more.
      if (signal.aborted) return false;
    }
    const free = maxInFlight - inFlight.size;
    const claimed = await store.transaction((tx) =>
      claimDeliveries(tx, { limit: free, now: Date.now(), leaseMs })
    );
    for (const delivery of claimed) {
      const running: Promise<void> = attempt(delivery)
        .catch((error) => {
          // Only the stop aborting an outage's wait ends here: the lease gives the delivery back.
          if (!stopping.signal.aborted) {
            log.warn("cannot record a webhook attempt", { error: describeError(error) });
          }
        })
        .finally(() => {
          inFlight.delete(running);
          loop.wake();
        });
      inFlight.add(running);
    }
    return claimed.length === free;
  }

  /** Sends `delivery` once and records how it went: delivered, due again later, or failed. */
  async function attempt(delivery: ClaimedDelivery): Promise<void> {
    const fields = { webhook_id: delivery.webhook_id, attempts: delivery.attempts };
    let result: { outcome: Outcome; error?: string };
    try {
      result = await post(delivery);
    } catch {
      // Stopping: the delivery goes back as it was, due now, for whoever runs next.
      await record((tx) =>
        markAttemptFailed(tx, delivery, { retryAt: Date.now(), error: "interrupted by shutdown" })
      ).catch(() => {});
      return;
    }
    const { outcome, error = "" } = result;
    attemptsMade.inc({ outcome });
    const now = Date.now();
    if (outcome === "delivered") {
      receiver.succeeded(fields);
      if (await record((tx) => markDelivered(tx, delivery.webhook_id, now))) {
        deliveriesEnded.inc({ status: "delivered" });
        log.debug("delivered notification to the webhook", fields);
      }
      return;
    }
    const retryAt = nextAttemptAt(delivery.attempts, {
      createdAt: Date.parse(delivery.created_at),
      now,
    }, backoff);
    if (!await record((tx) => markAttemptFailed(tx, delivery, { retryAt, error }))) return;
    if (retryAt === undefined) {
      deliveriesEnded.inc({ status: "failed" });
      log.error("webhook delivery failed after retrying for a day", { ...fields, error });
      return;
    }
    wakeAt(retryAt);
    receiver.failed(error, fields);
  }

  /** POSTs `delivery`, signed afresh; throws only when the sender is stopping. */
  async function post(delivery: ClaimedDelivery): Promise<{ outcome: Outcome; error?: string }> {
    const { webhook_id: webhookId, body } = delivery;
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = await webhookHeaders(signer, { webhookId, timestamp, body });
    const timeout = AbortSignal.timeout(timeoutMs);
    try {
      const response = await fetch(url, {
        method: "POST",
        headers,
        body,
        redirect: "manual",
        signal: AbortSignal.any([timeout, stopping.signal]),
      });
      // The status is the answer; a receiver's slow or large body must not hold a slot.
      await response.body?.cancel().catch(() => {});
      if (response.status >= 200 && response.status < 300) return { outcome: "delivered" };
      return { outcome: "refused", error: `answered HTTP ${response.status}` };
    } catch (error) {
      if (stopping.signal.aborted) throw error;
      if (timeout.aborted) return { outcome: "timeout", error: `no answer within ${timeoutMs} ms` };
      return { outcome: "unreachable", error: describeError(error) };
    }
  }

  /** Runs `fn` in a transaction, waiting through outages unless stopping. */
  function record<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return outages.retryThrough(() => store.transaction(fn), stopping.signal);
  }

  /** Wakes the sender when a delivery comes due again, rather than at the next poll. */
  function wakeAt(at: number): void {
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      loop.wake();
    }, Math.max(0, at - Date.now()));
    retryTimers.add(timer);
  }

  return {
    async stop() {
      stopListening();
      stopping.abort();
      await loop.stop();
      await Promise.all(inFlight);
      for (const timer of retryTimers) clearTimeout(timer);
      retryTimers.clear();
    },
  };
}
