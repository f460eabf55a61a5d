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
 * only its own deliveries. Commits that enqueued deliveries wake it; a poll finds the rest (due
 * retries, another instance's expired leases). During an outage of the database it pauses, as the
 * consumers do.
 * @module
 */
import type { Store, Tx } from "../shared/store.ts";
import { describeError, type Logger } from "../shared/log.ts";
import type { OutageWatch } from "../shared/outage.ts";
import { metrics, watchWebhookDeliveries } from "../shared/metrics.ts";
import { webhookHeaders, webhookSigner } from "./standard_webhook.ts";
import { type BackoffOptions, nextAttemptAt } from "./webhook_backoff.ts";
import {
  claimDeliveries,
  type ClaimedDelivery,
  markAttemptFailed,
  markDelivered,
  readDeliveryBacklog,
  releaseLeases,
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
  backoff?: BackoffOptions;
}

/** A running sender. */
export interface WebhookSender {
  /** Stops claiming, cuts the attempts in flight short and gives their deliveries back. */
  stop(): Promise<void>;
}

/** How an attempt ended, as the attempts metric counts it. */
type Outcome = "delivered" | "refused" | "timeout" | "unreachable";

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
  const stopping = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const retryTimers = new Set<ReturnType<typeof setTimeout>>();
  let wakeUp: (() => void) | undefined;
  // A wake during a round must not be lost, or a new delivery would wait a whole poll interval.
  let woken = false;
  let claimFailing = false;
  let receiverFailing = false;
  function wake(): void {
    woken = true;
    wakeUp?.();
  }
  const stopListening = store.listen(WEBHOOK_TOPIC, wake);
  watchWebhookDeliveries(() => store.read(readDeliveryBacklog));

  /** Runs `fn` in a transaction, waiting through outages unless stopping. */
  function record<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return outages.retryThrough(() => store.transaction(fn), stopping.signal);
  }

  /** Wakes the sender when a delivery comes due again, rather than at the next poll. */
  function wakeAt(at: number): void {
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      wake();
    }, Math.max(0, at - Date.now()));
    retryTimers.add(timer);
  }

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
    metrics.webhookAttempts.inc({ outcome });
    const now = Date.now();
    if (outcome === "delivered") {
      if (receiverFailing) log.info("webhook receiver answers again", fields);
      receiverFailing = false;
      if (await record((tx) => markDelivered(tx, delivery.webhook_id, now))) {
        metrics.webhookDeliveries.inc({ status: "delivered" });
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
      metrics.webhookDeliveries.inc({ status: "failed" });
      log.error("webhook delivery failed after retrying for a day", { ...fields, error });
      return;
    }
    wakeAt(retryAt);
    // One line per streak: a dead receiver must not write one per attempt.
    if (!receiverFailing) {
      log.warn("cannot deliver to the webhook, will retry", { ...fields, error });
    }
    receiverFailing = true;
  }

  /** Claims what is due for the free slots and starts their attempts; returns how many. */
  async function claimAndSend(free: number): Promise<number> {
    const claimed = await record((tx) =>
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
          wake();
        });
      inFlight.add(running);
    }
    return claimed.length;
  }

  async function run(): Promise<void> {
    // One process owns a SQLite file: a lease there can only be a crashed run's.
    if (store.dialect === "sqlite") {
      try {
        await record(releaseLeases);
      } catch (error) {
        if (stopping.signal.aborted) return;
        log.warn("cannot release webhook leases", { error: describeError(error) });
      }
    }
    while (!stopping.signal.aborted) {
      woken = false;
      const free = maxInFlight - inFlight.size;
      let claimed = 0;
      if (free > 0) {
        try {
          claimed = await claimAndSend(free);
          if (claimFailing) log.info("webhook sender recovered");
          claimFailing = false;
        } catch (error) {
          if (stopping.signal.aborted) return;
          if (!claimFailing) {
            log.warn("cannot claim webhook deliveries, will retry", {
              error: describeError(error),
            });
          }
          claimFailing = true;
        }
      }
      if (stopping.signal.aborted) return;
      if (free > 0 && claimed === free) continue;
      if (woken && !claimFailing && inFlight.size < maxInFlight) continue;
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
    async stop() {
      stopListening();
      stopping.abort();
      wake();
      await running;
      await Promise.all(inFlight);
      for (const timer of retryTimers) clearTimeout(timer);
      retryTimers.clear();
    },
  };
}
