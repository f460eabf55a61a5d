/**
 * The consuming side of exactly-once, from a delivery to its settlement, in the order it happens:
 *
 * 1. receive a batch from the broker ({@linkcode startConsumer});
 * 2. validate each delivery: its schema and its publisher (`origin.ts`); what fails is poison;
 * 3. in one transaction, record the batch in the inbox (a duplicate is skipped), let the handler
 *    apply the fresh events together and put what they publish into the outbox, and commit;
 * 4. settle: ack what committed; retry a transient failure through the retry exchange with growing
 *    delays; dead-letter poison, and what failed on its last retry, with the reason.
 *
 * A batch that fails is handled again one event per transaction, so that one bad event fails alone.
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
import { type Counter, counter, histogram } from "./metrics.ts";
import { MessageTrace } from "./tracing.ts";

/** A message that can never succeed: it goes to the queue's `.dlq` with this reason, not retried. */
export class PoisonMessageError extends Error {
  override name = "PoisonMessageError";
}

/** What every consumed event has: an id (the inbox's key) and a type. */
export type ConsumedEvent = { event_id: string; event_type: EventType };

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
 * What runs once a batch committed, for one of its events: a log line that must not claim what a
 * rollback undid.
 */
export type AfterCommit = (() => void) | void;

/** A fresh event of a batch, and what its handler knows of its message. */
export interface HandledEvent<T> {
  event: T;
  context: MessageContext;
}

/**
 * Applies the effects of a batch's fresh events inside `tx`, in the order they came, and resolves
 * with what runs after the commit for each, at the same index. The batch is the unit of work: a
 * handler that writes one statement for the whole batch costs one round trip to the database
 * however many events it holds, which is what keeps a consumer fast on a database far away.
 */
export type BatchHandler<T> = (tx: Tx, batch: HandledEvent<T>[]) => Promise<AfterCommit[]>;

/** Applies one event's effects inside `tx`; see {@linkcode eachEvent}. */
export type EventHandler<T> = (tx: Tx, event: T, context: MessageContext) => Promise<AfterCommit>;

/** Options for {@linkcode eachEvent}. */
export interface EachEventOptions<T> {
  /**
   * Runs first, with all of the batch's events: where a handler takes the locks its events will
   * need, in one fixed order, so that the batches of two instances never deadlock.
   * @default {nothing}
   */
  lock?: (tx: Tx, events: T[]) => Promise<unknown>;
}

/**
 * A batch handler that gives the events to `handle` one after the other: for events whose
 * handling is rare or depends on what the one before did, at one round trip per statement each.
 */
export function eachEvent<T>(
  handle: EventHandler<T>,
  options: EachEventOptions<T> = {},
): BatchHandler<T> {
  return async (tx, batch) => {
    await options.lock?.(tx, batch.map(({ event }) => event));
    const afterCommit: AfterCommit[] = [];
    for (const { event, context } of batch) afterCommit.push(await handle(tx, event, context));
    return afterCommit;
  };
}

/**
 * The items of `items` whose key no earlier item has, in their order. A batch handler writes these
 * in one statement and weighs the rest (a second event about the same order) alone afterwards, as
 * a later batch would.
 */
export function firstOfEach<T>(items: readonly T[], keyOf: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = keyOf(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * The fields of a handler's log lines about an order: which order, which event, which trace. A type
 * rather than an interface, so that it is accepted where any log fields are.
 */
export type OrderEventFields = {
  order_id: string;
  event_id: string;
  trace_id: string;
};

/** The fields every log line a handler writes about `orderId`'s event carries. */
export function orderEventFields(
  orderId: string,
  event: { event_id: string },
  context: TraceContext,
): OrderEventFields {
  return { order_id: orderId, event_id: event.event_id, trace_id: context.traceId };
}

/** What the consumer needs of the broker. */
export type ConsumerBroker = Pick<Broker, "consume" | "forward" | "user">;

/** Options for {@linkcode startConsumer}. */
export interface ConsumerOptions<T extends ConsumedEvent> {
  /** The queue, which also names this consumer in the inbox. */
  queue: Queue;
  schema: z.ZodType<T>;
  /** Applies a batch's fresh events; a per-event handler is made one with {@linkcode eachEvent}. */
  handle: BatchHandler<T>;
  log: Logger;
  /** The store's outages, which pause this consumer. */
  outages: OutageWatch;
  /** @default {DEFAULT_PREFETCH of broker.ts} */
  prefetch?: number;
  /**
   * The delay before each retry, in milliseconds; as declared in the topology.
   * @default {DEFAULT_RETRY_DELAYS_MS}
   */
  retryDelaysMs?: readonly number[];
  /**
   * The chance, 0 to 1, that handling one event throws a transient error just before the commit:
   * fault injection for tests (`FAULT_TRANSIENT_RATE`). @default {0}
   */
  faultRate?: number;
}

/** The labels of the consumer's counters of messages. */
type MessageLabels = "queue" | "event_type";

/** Declares a counter of messages by queue and event type for each `[name, help]` of `declared`. */
function messageCounters<K extends string>(
  declared: Record<K, readonly [name: string, help: string]>,
): Record<K, Counter<MessageLabels>> {
  const labels: readonly MessageLabels[] = ["queue", "event_type"];
  const entries = Object.entries<readonly [string, string]>(declared);
  return Object.fromEntries(
    entries.map(([key, [name, help]]) => [key, counter(name, help, labels)]),
  ) as Record<K, Counter<MessageLabels>>;
}

const { consumed, acked, retried, deadLettered, duplicates } = messageCounters({
  consumed: ["messages_consumed_total", "Messages delivered to a consumer"],
  acked: ["messages_acked_total", "Messages acked after their effects committed"],
  retried: ["messages_retried_total", "Messages sent to a retry queue after a transient failure"],
  deadLettered: ["messages_dead_lettered_total", "Messages sent to a .dlq"],
  duplicates: ["messages_duplicate_total", "Messages skipped as already handled (inbox)"],
});
const handlerDuration = histogram(
  "handler_duration_seconds",
  "Time to handle and commit one batch of deliveries",
  ["queue"],
);

/** Everything one consumer's functions below share: its options, and what it runs with. */
interface Run<T extends ConsumedEvent> extends Required<Omit<ConsumerOptions<T>, "prefetch">> {
  broker: ConsumerBroker;
  store: Store;
  /** The deployment prefix of the services' broker users, where each has its own (`origin.ts`). */
  prefix: string | undefined;
  /** Aborts when the consumer stops. */
  stopping: AbortSignal;
}

/** Consumes `options.queue` with exactly-once effects; see the module doc. */
export function startConsumer<T extends ConsumedEvent>(
  broker: ConsumerBroker,
  store: Store,
  options: ConsumerOptions<T>,
): Consumer {
  const stopping = new AbortController();
  const run: Run<T> = {
    ...options,
    retryDelaysMs: options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS,
    faultRate: options.faultRate ?? 0,
    broker,
    store,
    // Where each service has a broker user of its own, an event is believed only from its publisher.
    prefix: prefixOf(broker.user, consumerOf(options.queue)),
    stopping: stopping.signal,
  };
  const consumer = broker.consume(
    options.queue,
    (batch, channelLost) => consumeBatch(batch, { run, channelLost }),
    { prefetch: options.prefetch },
  );
  // During an outage the consumer holds what it has, unacked, rather than returning it: on
  // RabbitMQ before 4.0 a quorum queue counts every return (a nack, a closed channel) toward
  // x-delivery-limit, so returning would cost each held message one of its deliveries per outage,
  // and a consumer that took them again would spend them all in a loop. Held, they cost nothing
  // and are handled the moment the database answers; they are at most one prefetch, and an outage
  // longer than the broker's consumer_timeout closes the channel, which returns them once while
  // the paused consumer stays unsubscribed.
  const stopWatching = options.outages.onChange((paused) =>
    paused ? consumer.pause() : consumer.resume()
  );
  return {
    ...consumer,
    async stop() {
      stopWatching();
      stopping.abort();
      await consumer.stop();
    },
  };
}

/** What a batch is handled with: the consumer's run, and the signal of its channel's loss. */
interface BatchContext<T extends ConsumedEvent> {
  run: Run<T>;
  /** Aborts once the batch's channel is gone; see `BatchHandler` in `delivery.ts`. */
  channelLost: AbortSignal;
}

/** Handles `batch` and says how to settle each delivery, tracing each delivery's handling. */
async function consumeBatch<T extends ConsumedEvent>(
  batch: Delivery[],
  context: BatchContext<T>,
): Promise<Settlement[]> {
  const traces = batch.map((delivery) => new MessageTrace(context.run.queue, delivery));
  let settlements: Settlement[] | undefined;
  try {
    return settlements = await handleBatch(batch, { ...context, traces });
  } catch (error) {
    for (const trace of traces) trace.fail(error);
    throw error;
  } finally {
    traces.forEach((trace, index) => trace.end(settlements?.[index]));
  }
}

/** A delivery that passed validation, with its event and its place in the batch. */
interface ValidDelivery<T> {
  index: number;
  event: T;
  delivery: Delivery;
  trace: MessageTrace;
}

/** A delivery that can never succeed, and why. */
interface Poison {
  index: number;
  reason: string;
}

/**
 * Validates, commits and settles `batch`: the whole path of its deliveries. Commits the valid ones
 * in one transaction, or one by one when that fails, then parks the poison.
 */
async function handleBatch<T extends ConsumedEvent>(
  batch: Delivery[],
  context: BatchContext<T> & { traces: MessageTrace[] },
): Promise<Settlement[]> {
  const { run, channelLost, traces } = context;
  const settlements: Settlement[] = batch.map(() => ({ action: "ack" }));
  const valid: ValidDelivery<T>[] = [];
  const poison: Poison[] = [];
  for (const [index, delivery] of batch.entries()) {
    consumed.inc({ queue: run.queue, event_type: eventTypeOf(delivery) });
    const checked = validate(delivery, run);
    if ("reason" in checked) {
      poison.push({ index, reason: checked.reason });
      traces[index].fail(new PoisonMessageError(checked.detail));
    } else valid.push({ index, event: checked.event, delivery, trace: traces[index] });
  }
  if (valid.length > 0) {
    const unconfirmed = new Map<string, () => void>();
    try {
      await commitThroughOutages(valid, { run, unconfirmed });
    } catch {
      await handleOneByOne(valid, { run, channelLost, unconfirmed, settlements });
    }
  }
  // Poison is parked only now, just before the batch is settled: the commit can take a while (one
  // by one, or paused by an outage), and a crash between the copy to the DLQ and the ack would
  // park a second copy; so would a copy of a delivery whose channel was lost meanwhile.
  for (const { index, reason } of poison) {
    settlements[index] = channelLost.aborted
      ? REDELIVERED
      : await deadLetter(batch[index], { run, headers: { "x-rejected-reason": reason } });
  }
  for (const [index, settlement] of settlements.entries()) {
    if (settlement.action === "ack") {
      acked.inc({ queue: run.queue, event_type: eventTypeOf(batch[index]) });
    }
  }
  return settlements;
}

/**
 * The event in `delivery` if it matches the schema and comes from the service that publishes its
 * type; else the reason to dead-letter it with, and the detail for its trace.
 */
function validate<T extends ConsumedEvent>(
  delivery: Delivery,
  run: Run<T>,
): { event: T } | { reason: string; detail: string } {
  const { queue, prefix } = run;
  const parsed = parseEvent(delivery.body, run.schema);
  if (!parsed.ok) return { reason: parsed.reason, detail: parsed.reason };
  if (!isTrusted(delivery, parsed.event.event_type, { queue, prefix })) {
    const publisher = publisherOf(delivery, queue, prefix) ?? "no user_id";
    return { reason: UNTRUSTED_PUBLISHER, detail: `${UNTRUSTED_PUBLISHER}: ${publisher}` };
  }
  return { event: parsed.event };
}

/**
 * What attempts whose COMMIT was lost left to do after it, by event id; see
 * {@linkcode handleInTransaction}.
 */
type Unconfirmed = Map<string, () => void>;

/**
 * Commits `batch`, pausing through any outage of the database meanwhile. Rejects with the
 * failure of the batch, or with the abort of a stop that came during an outage.
 */
function commitThroughOutages<T extends ConsumedEvent>(
  batch: ValidDelivery<T>[],
  context: { run: Run<T>; unconfirmed: Unconfirmed },
): Promise<void> {
  return context.run.outages.retryThrough(() => commit(batch, context), context.run.stopping);
}

/** Handles `batch` in one transaction and, once it committed, runs what the handlers left to do. */
async function commit<T extends ConsumedEvent>(
  batch: ValidDelivery<T>[],
  context: { run: Run<T>; unconfirmed: Unconfirmed },
): Promise<void> {
  const { run, unconfirmed } = context;
  const stopTimer = handlerDuration.startTimer({ queue: run.queue });
  const attempted: Unconfirmed = new Map();
  let afterCommit: Array<() => void>;
  try {
    afterCommit = await MessageTrace.commit(
      batch.map((valid) => valid.trace),
      () =>
        run.store.transaction((tx) =>
          handleInTransaction(tx, batch, { run, unconfirmed, attempted })
        ),
    );
  } catch (error) {
    // Only a lost connection can hide a COMMIT that was applied: any other failure rolled back.
    if (run.store.isOutage(error)) {
      for (const [id, then] of attempted) unconfirmed.set(id, then);
    }
    throw error;
  }
  stopTimer();
  afterCommit.forEach((then) => then());
}

/**
 * Handles `batch` in `tx`: records it in the inbox, skips duplicates, lets the handler apply the
 * fresh events, and puts what it publishes into the outbox; resolves with what runs after the
 * commit. Each event's after-commit work is recorded in `attempted`. A COMMIT can be lost with its
 * connection after the database applied it: then `unconfirmed` holds what the failed attempt left
 * to do, and an event that this attempt finds in the inbox gets it done now rather than never
 * (once, though the batch holds it twice).
 */
async function handleInTransaction<T extends ConsumedEvent>(
  tx: Tx,
  batch: ValidDelivery<T>[],
  context: { run: Run<T>; unconfirmed: ReadonlyMap<string, () => void>; attempted: Unconfirmed },
): Promise<Array<() => void>> {
  const { run, unconfirmed, attempted } = context;
  const { queue, log } = run;
  const afterCommit: Array<() => void> = [];
  const caughtUp = new Set<string>();
  const fresh = await recordInbox(tx, queue, batch.map((valid) => valid.event.event_id));
  const outbox: OutboxEntry[] = [];
  const handled: ValidDelivery<T>[] = [];
  for (const [index, valid] of batch.entries()) {
    const { event, delivery, trace } = valid;
    if (fresh[index]) {
      handled.push(valid);
      continue;
    }
    const committedBefore = unconfirmed.get(event.event_id);
    if (committedBefore && !caughtUp.has(event.event_id)) {
      caughtUp.add(event.event_id);
      afterCommit.push(committedBefore);
      continue;
    }
    afterCommit.push(() => {
      duplicates.inc({ queue, event_type: eventTypeOf(delivery) });
      log.info("skipped duplicate", { queue, event_id: event.event_id, trace_id: trace.traceId });
    });
  }
  if (handled.length === 0) return afterCommit;
  const after = await run.handle(
    tx,
    handled.map(({ event, trace: { traceparent, traceId } }) => ({
      event,
      context: {
        traceparent,
        traceId,
        publish: (caused) => outbox.push({ event: caused, headers: { traceparent } }),
      },
    })),
  );
  for (const [index, { event }] of handled.entries()) {
    const then = after[index] ?? (() => {});
    afterCommit.push(then);
    attempted.set(event.event_id, then);
    if (run.faultRate > 0 && Math.random() < run.faultRate) {
      throw new Error("Injected transient fault (FAULT_TRANSIENT_RATE)");
    }
  }
  await enqueueOutbox(tx, outbox);
  return afterCommit;
}

/**
 * Handles each of `valid` in a transaction of its own after their batch failed, so that one bad
 * event fails alone, and writes in `settlements` how to settle each that fails again.
 */
async function handleOneByOne<T extends ConsumedEvent>(
  valid: ValidDelivery<T>[],
  context: BatchContext<T> & { unconfirmed: Unconfirmed; settlements: Settlement[] },
): Promise<void> {
  const { run, channelLost, unconfirmed, settlements } = context;
  for (const one of valid) {
    try {
      await commitThroughOutages([one], { run, unconfirmed });
    } catch (error) {
      one.trace.fail(error);
      settlements[one.index] = run.stopping.aborted
        ? { action: "requeue", error: "stopped during a database outage" }
        : channelLost.aborted
        ? REDELIVERED
        : error instanceof PoisonMessageError
        ? await deadLetter(one.delivery, { run, headers: { "x-rejected-reason": error.message } })
        : await retryLater(one, { run, failure: error });
    }
  }
}

/**
 * The settlement of a delivery whose channel is gone: the broker delivers it again, to whoever
 * consumes next, so it is neither parked nor retried from here.
 */
const REDELIVERED: Settlement = { action: "requeue", error: "its channel was lost" };

/** Sends `valid` to the retry queue of its next attempt, or to the DLQ after the last. */
async function retryLater<T extends ConsumedEvent>(
  valid: ValidDelivery<T>,
  context: { run: Run<T>; failure: unknown },
): Promise<Settlement> {
  const { run } = context;
  const { queue, retryDelaysMs, log } = run;
  const { delivery, trace } = valid;
  const error = describeError(context.failure);
  const attempt = Number(delivery.headers[RETRY_ATTEMPT_HEADER] ?? 0) + 1;
  if (attempt > retryDelaysMs.length) {
    return await deadLetter(delivery, {
      run,
      headers: {
        "x-rejected-reason": `failed ${attempt} times, last with: ${error}`,
        "x-attempts": attempt,
        "x-last-error": error,
      },
    });
  }
  const delayMs = retryDelaysMs[attempt - 1];
  try {
    const retry = retryQueue(queue, delayMs);
    await run.broker.forward(delivery, { exchange: RETRY_EXCHANGE, routingKey: retry }, {
      [RETRY_ATTEMPT_HEADER]: attempt,
      "x-last-error": error,
      ...origin(delivery),
      ...publishedBy(delivery, run),
    });
    retried.inc({ queue, event_type: eventTypeOf(delivery) });
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

/** Parks `delivery` in the DLQ (with `headers` saying why) or, if that fails, requeues it. */
async function deadLetter<T extends ConsumedEvent>(
  delivery: Delivery,
  context: { run: Run<T>; headers: Record<string, unknown> },
): Promise<Settlement> {
  const { run, headers } = context;
  const { queue, log } = run;
  const reason = String(headers["x-rejected-reason"]);
  try {
    await run.broker.forward(delivery, { exchange: DEAD_LETTER_EXCHANGE, routingKey: queue }, {
      "x-rejected-at": new Date().toISOString(),
      ...origin(delivery),
      ...publishedBy(delivery, run),
      ...headers,
    });
    deadLettered.inc({ queue, event_type: eventTypeOf(delivery) });
    log.warn("dead-lettered message", { queue, message_id: delivery.messageId, reason });
    return { action: "dead-letter", reason };
  } catch (error) {
    log.warn("cannot dead-letter message, requeueing", { queue, error: describeError(error) });
    return { action: "requeue", error: describeError(error) };
  }
}

/** Where a message was first published: kept across retries so that a replay can go back there. */
function origin(delivery: Delivery): Record<string, unknown> {
  return {
    "x-original-exchange": delivery.headers["x-original-exchange"] ?? delivery.exchange,
    "x-original-routing-key": delivery.headers["x-original-routing-key"] ?? delivery.routingKey,
  };
}

/**
 * The headers that say who published `delivery`, for a copy this consumer publishes as its own
 * user: see `origin.ts`. A header the message brought along is never passed on as it is.
 */
function publishedBy(
  delivery: Delivery,
  run: { queue: Queue; prefix: string | undefined },
): Record<string, unknown> {
  return { [PUBLISHED_BY_HEADER]: publisherOf(delivery, run.queue, run.prefix) ?? "" };
}

const EVENT_TYPES: ReadonlySet<string> = new Set(Object.values(EventType));

/** The event type a delivery claims, as a metric label: one of a known few, whatever it says. */
function eventTypeOf(delivery: Delivery): string {
  const claimed = delivery.type ?? delivery.routingKey;
  return EVENT_TYPES.has(claimed) ? claimed : "other";
}
