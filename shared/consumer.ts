/**
 * The consuming side of exactly-once: parse every delivery, send poison to its DLQ at once, handle
 * the rest of a batch in one transaction with the inbox and the outbox (the events the handlers
 * publish), commit, and only then ack. A transient
 * failure is retried through the broker's retry queues with growing delays, then dead-lettered.
 * An outage of the database is no failure of the message: the consumer pauses until it ends and
 * then handles the same batch, without spending its retry budget (see `outage.ts`).
 * @module
 */
import type { z } from "zod";
import type { Broker, Consumer } from "./broker.ts";
import type { Delivery, Settlement } from "./delivery.ts";
import type { Store, Tx } from "./store.ts";
import {
  consumerOf,
  DEAD_LETTER_EXCHANGE,
  DEFAULT_RETRY_DELAYS_MS,
  EventType,
  type Queue,
  RETRY_EXCHANGE,
  retryQueue,
} from "./topology.ts";
import {
  isTrusted,
  prefixOf,
  PUBLISHED_BY_HEADER,
  publisherOf,
  UNTRUSTED_PUBLISHER,
} from "./origin.ts";
import { type Event, parseEvent } from "./events.ts";
import { enqueueOutbox, type OutboxEntry } from "./outbox.ts";
import { recordInbox } from "./inbox.ts";
import { describeError, type Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";
import { metrics } from "./metrics.ts";
import { MessageTrace } from "./tracing.ts";

/** A message that can never succeed: it goes to the queue's `.dlq` with this reason, not retried. */
export class PoisonMessageError extends Error {
  override name = "PoisonMessageError";
}

/** The header that counts a message's retries so far. */
export const RETRY_ATTEMPT_HEADER = "x-retry-attempt";

/** The trace a message belongs to. */
export interface TraceContext {
  /** The `traceparent` of this message's handling: parent of what it causes. */
  traceparent: string;
  /** For log lines: `trace_id`. */
  traceId: string;
}

/** What a handler knows of the message besides its event, and how it publishes what follows. */
export interface MessageContext extends TraceContext {
  /**
   * Publishes `event` as a consequence of this message: it goes into the outbox in the batch's
   * transaction (one statement for the batch), carrying a child of this message's trace.
   */
  publish(event: Event): void;
}

/**
 * Applies one event's effects inside `tx`. Whatever it returns runs after the commit: the place for
 * a log line that must not claim what a rollback undid.
 */
export type EventHandler<T> = (
  tx: Tx,
  event: T,
  context: MessageContext,
) => Promise<(() => void) | void>;

/** What the consumer needs of the broker. */
export type ConsumerBroker = Pick<Broker, "consume" | "forward" | "user">;

/** Options for {@linkcode startConsumer}. */
export interface ConsumerOptions<T extends { event_id: string; event_type: EventType }> {
  /** The queue, which also names this consumer in the inbox. */
  queue: Queue;
  schema: z.ZodType<T>;
  handle: EventHandler<T>;
  /**
   * Runs first in every transaction, with all of its events: where a handler takes the locks its
   * events will need, in one fixed order, so that the batches of two instances never deadlock.
   * @default {nothing}
   */
  prepare?: (tx: Tx, events: T[]) => Promise<void>;
  log: Logger;
  /** The store's outages, which pause this consumer. */
  outages: OutageWatch;
  /** @default {200: DEFAULT_PREFETCH of broker.ts} */
  prefetch?: number;
  /** The delay before each retry, in milliseconds; as declared in the topology. @default {[1000, 5000, 30000]} */
  retryDelaysMs?: readonly number[];
  /**
   * The chance, 0 to 1, that handling one event throws a transient error just before the commit:
   * fault injection for tests (`FAULT_TRANSIENT_RATE`). @default {0}
   */
  faultRate?: number;
}

/** What one batch's handling keeps track of. */
interface BatchState {
  settlements: Settlement[];
  /** What attempts whose COMMIT was lost left to do; see `handleAll`. */
  unconfirmed: Map<string, () => void>;
  channelLost: AbortSignal;
}

/**
 * The settlement of a delivery whose channel is gone: the broker delivers it again, to whoever
 * consumes next, so it is neither parked nor retried from here.
 */
const REDELIVERED: Settlement = { action: "requeue", error: "its channel was lost" };

interface ValidDelivery<T> {
  index: number;
  event: T;
  delivery: Delivery;
  trace: MessageTrace;
}

const EVENT_TYPES: ReadonlySet<string> = new Set(Object.values(EventType));

/** The event type a delivery claims, as a metric label: one of a known few, whatever it says. */
function eventTypeOf(delivery: Delivery): string {
  const claimed = delivery.type ?? delivery.routingKey;
  return EVENT_TYPES.has(claimed) ? claimed : "other";
}

/** Consumes `options.queue` with exactly-once effects; see the module doc. */
export function startConsumer<T extends { event_id: string; event_type: EventType }>(
  broker: ConsumerBroker,
  store: Store,
  options: ConsumerOptions<T>,
): Consumer {
  const {
    queue,
    schema,
    handle,
    prepare,
    log,
    outages,
    prefetch,
    retryDelaysMs = DEFAULT_RETRY_DELAYS_MS,
    faultRate = 0,
  } = options;
  const stopping = new AbortController();
  // Where each service has a broker user of its own, an event is believed only from its publisher.
  const prefix = prefixOf(broker.user, consumerOf(queue));

  /**
   * The headers that say who published `delivery`, for a copy this consumer publishes as its own
   * user: see `origin.ts`. A header the message brought along is never passed on as it is.
   */
  function publishedBy(delivery: Delivery): Record<string, unknown> {
    const publisher = publisherOf(delivery, queue, prefix);
    return { [PUBLISHED_BY_HEADER]: publisher ?? "" };
  }

  /**
   * Handles `batch` in `tx`, recording in `work.attempted` what each event leaves to do after the
   * commit. A COMMIT can be lost with its connection after the database applied it: then
   * `work.unconfirmed` holds what the failed attempt left to do, and an event that this attempt
   * finds in the inbox gets it done now rather than never (once, though the batch holds it twice).
   */
  async function handleAll(
    tx: Tx,
    batch: ValidDelivery<T>[],
    work: { unconfirmed: ReadonlyMap<string, () => void>; attempted: Map<string, () => void> },
  ): Promise<Array<() => void>> {
    const afterCommit: Array<() => void> = [];
    const caughtUp = new Set<string>();
    await prepare?.(tx, batch.map((valid) => valid.event));
    const fresh = await recordInbox(tx, queue, batch.map((valid) => valid.event.event_id));
    const outbox: OutboxEntry[] = [];
    for (const [index, { event, delivery, trace }] of batch.entries()) {
      if (!fresh[index]) {
        const committedBefore = work.unconfirmed.get(event.event_id);
        if (committedBefore && !caughtUp.has(event.event_id)) {
          caughtUp.add(event.event_id);
          afterCommit.push(committedBefore);
          continue;
        }
        afterCommit.push(() => {
          metrics.duplicates.inc({ queue, event_type: eventTypeOf(delivery) });
          log.info("skipped duplicate", {
            queue,
            event_id: event.event_id,
            trace_id: trace.traceId,
          });
        });
        continue;
      }
      const { traceparent, traceId } = trace;
      const after = await handle(tx, event, {
        traceparent,
        traceId,
        publish: (caused) => outbox.push({ event: caused, headers: { traceparent } }),
      });
      if (after) afterCommit.push(after);
      work.attempted.set(event.event_id, after ?? (() => {}));
      if (faultRate > 0 && Math.random() < faultRate) {
        throw new Error("Injected transient fault (FAULT_TRANSIENT_RATE)");
      }
    }
    await enqueueOutbox(tx, outbox);
    return afterCommit;
  }

  async function commit(
    batch: ValidDelivery<T>[],
    unconfirmed: Map<string, () => void>,
  ): Promise<void> {
    const stopTimer = metrics.handlerDuration.startTimer({ queue });
    const attempted = new Map<string, () => void>();
    let afterCommit: Array<() => void>;
    try {
      afterCommit = await MessageTrace.commit(
        batch.map((valid) => valid.trace),
        () => store.transaction((tx) => handleAll(tx, batch, { unconfirmed, attempted })),
      );
    } catch (error) {
      // Only a lost connection can hide a COMMIT that was applied: any other failure rolled back.
      if (store.isOutage(error)) { for (const [id, run] of attempted) unconfirmed.set(id, run); }
      throw error;
    }
    stopTimer();
    afterCommit.forEach((run) => run());
  }

  /** Parks `delivery` in the DLQ (with `headers` saying why) or, if that fails, requeues it. */
  async function deadLetter(
    delivery: Delivery,
    headers: Record<string, unknown>,
  ): Promise<Settlement> {
    const reason = String(headers["x-rejected-reason"]);
    try {
      await broker.forward(delivery, { exchange: DEAD_LETTER_EXCHANGE, routingKey: queue }, {
        "x-rejected-at": new Date().toISOString(),
        ...origin(delivery),
        ...publishedBy(delivery),
        ...headers,
      });
      metrics.deadLettered.inc({ queue, event_type: eventTypeOf(delivery) });
      log.warn("dead-lettered message", { queue, message_id: delivery.messageId, reason });
      return { action: "dead-letter", reason };
    } catch (error) {
      log.warn("cannot dead-letter message, requeueing", { queue, error: describeError(error) });
      return { action: "requeue", error: describeError(error) };
    }
  }

  /** Sends `delivery` to the retry queue of its next attempt, or to the DLQ after the last. */
  async function retryLater(valid: ValidDelivery<T>, failure: unknown): Promise<Settlement> {
    const { delivery, trace } = valid;
    const error = describeError(failure);
    const attempt = Number(delivery.headers[RETRY_ATTEMPT_HEADER] ?? 0) + 1;
    if (attempt > retryDelaysMs.length) {
      return await deadLetter(delivery, {
        "x-rejected-reason": `failed ${attempt} times, last with: ${error}`,
        "x-attempts": attempt,
        "x-last-error": error,
      });
    }
    const delayMs = retryDelaysMs[attempt - 1];
    try {
      const retry = retryQueue(queue, delayMs);
      await broker.forward(delivery, { exchange: RETRY_EXCHANGE, routingKey: retry }, {
        [RETRY_ATTEMPT_HEADER]: attempt,
        "x-last-error": error,
        ...origin(delivery),
        ...publishedBy(delivery),
      });
      metrics.retried.inc({ queue, event_type: eventTypeOf(delivery) });
      trace.event("retry scheduled", {
        "campus_food.attempt": attempt,
        "campus_food.delay_ms": delayMs,
      });
      log.warn("handling failed, retrying later", {
        queue,
        message_id: delivery.messageId,
        attempt,
        delay_ms: delayMs,
        error,
      });
      return { action: "ack" };
    } catch (publishError) {
      log.warn("cannot schedule retry, requeueing", { queue, error: describeError(publishError) });
      return { action: "requeue", error };
    }
  }

  /**
   * Commits `batch`, pausing through any outage of the database meanwhile. Rejects with the
   * failure of the batch, or with the abort of a stop that came during an outage.
   */
  function commitThroughOutages(
    batch: ValidDelivery<T>[],
    unconfirmed: Map<string, () => void>,
  ): Promise<void> {
    return outages.retryThrough(() => commit(batch, unconfirmed), stopping.signal);
  }

  /** When a batch fails, each event gets its own transaction so one bad event fails alone. */
  async function handleOneByOne(valid: ValidDelivery<T>[], state: BatchState): Promise<void> {
    const { settlements, unconfirmed, channelLost } = state;
    for (const one of valid) {
      const { index, delivery } = one;
      try {
        await commitThroughOutages([one], unconfirmed);
      } catch (error) {
        one.trace.fail(error);
        settlements[index] = stopping.signal.aborted
          ? { action: "requeue", error: "stopped during a database outage" }
          : channelLost.aborted
          ? REDELIVERED
          : error instanceof PoisonMessageError
          ? await deadLetter(delivery, { "x-rejected-reason": error.message })
          : await retryLater(one, error);
      }
    }
  }

  /** Handles `batch`, whose handling `traces` follow, and says how to settle each delivery. */
  async function handleBatch(
    batch: Delivery[],
    traces: MessageTrace[],
    channelLost: AbortSignal,
  ): Promise<Settlement[]> {
    const settlements: Settlement[] = batch.map(() => ({ action: "ack" }));
    const valid: ValidDelivery<T>[] = [];
    const poison: Array<{ index: number; reason: string }> = [];
    for (const [index, delivery] of batch.entries()) {
      metrics.consumed.inc({ queue, event_type: eventTypeOf(delivery) });
      const parsed = parseEvent(delivery.body, schema);
      if (!parsed.ok) {
        poison.push({ index, reason: parsed.reason });
        traces[index].fail(new PoisonMessageError(parsed.reason));
      } else if (!isTrusted(delivery, parsed.event.event_type, { queue, prefix })) {
        const publisher = publisherOf(delivery, queue, prefix) ?? "no user_id";
        poison.push({ index, reason: UNTRUSTED_PUBLISHER });
        traces[index].fail(new PoisonMessageError(`${UNTRUSTED_PUBLISHER}: ${publisher}`));
      } else {
        valid.push({ index, event: parsed.event, delivery, trace: traces[index] });
      }
    }
    if (valid.length > 0) {
      const unconfirmed = new Map<string, () => void>();
      try {
        await commitThroughOutages(valid, unconfirmed);
      } catch {
        await handleOneByOne(valid, { settlements, unconfirmed, channelLost });
      }
    }
    // Poison is parked only now, just before the batch is settled: the commit can take a while (one
    // by one, or paused by an outage), and a crash between the copy to the DLQ and the ack would
    // park a second copy; so would a copy of a delivery whose channel was lost meanwhile.
    for (const { index, reason } of poison) {
      settlements[index] = channelLost.aborted
        ? REDELIVERED
        : await deadLetter(batch[index], { "x-rejected-reason": reason });
    }
    for (const [index, settlement] of settlements.entries()) {
      if (settlement.action === "ack") {
        metrics.acked.inc({ queue, event_type: eventTypeOf(batch[index]) });
      }
    }
    return settlements;
  }

  const consumer = broker.consume(queue, async (batch, channelLost) => {
    const traces = batch.map((delivery) => new MessageTrace(queue, delivery));
    let settlements: Settlement[] | undefined;
    try {
      return settlements = await handleBatch(batch, traces, channelLost);
    } catch (error) {
      for (const trace of traces) trace.fail(error);
      throw error;
    } finally {
      traces.forEach((trace, index) => trace.end(settlements?.[index]));
    }
  }, { prefetch });

  // During an outage the consumer holds what it has, unacked, rather than returning it: on
  // RabbitMQ before 4.0 a quorum queue counts every return (a nack, a closed channel) toward
  // x-delivery-limit, so returning would cost each held message one of its ten deliveries per
  // outage, and a consumer that took them again would spend them all in a loop. Held, they cost
  // nothing and are handled the moment the database answers; they are at most one prefetch, and an
  // outage longer than the broker's consumer_timeout (30 min) closes the channel, which returns them
  // once while the paused consumer stays unsubscribed.
  const stopWatching = outages.onChange((paused) => paused ? consumer.pause() : consumer.resume());
  return {
    ...consumer,
    async stop() {
      stopWatching();
      stopping.abort();
      await consumer.stop();
    },
  };
}

/** Where a message was first published: kept across retries so that a replay can go back there. */
function origin(delivery: Delivery): Record<string, unknown> {
  return {
    "x-original-exchange": delivery.headers["x-original-exchange"] ?? delivery.exchange,
    "x-original-routing-key": delivery.headers["x-original-routing-key"] ?? delivery.routingKey,
  };
}
