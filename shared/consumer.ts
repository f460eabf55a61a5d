/**
 * The consuming side of exactly-once: parse every delivery, send poison to its DLQ at once, handle
 * the rest of a batch in one transaction with the inbox, commit, and only then ack.
 * @module
 */
import type { z } from "zod";
import type { Broker, Consumer, Delivery, Settlement } from "./broker.ts";
import type { Store, Tx } from "./store.ts";
import type { Queue } from "./topology.ts";
import { parseEvent } from "./events.ts";
import { recordInbox } from "./inbox.ts";
import { describeError, type Logger } from "./log.ts";

/** A message that can never succeed: it goes to the queue's `.dlq` with this reason, not retried. */
export class PoisonMessageError extends Error {
  override name = "PoisonMessageError";
}

/**
 * Applies one event's effects inside `tx`. Whatever it returns runs after the commit: the place for
 * a log line that must not claim what a rollback undid.
 */
export type EventHandler<T> = (tx: Tx, event: T) => Promise<(() => void) | void>;

/** Options for {@linkcode startConsumer}. */
export interface ConsumerOptions<T extends { event_id: string }> {
  /** The queue, which also names this consumer in the inbox. */
  queue: Queue;
  schema: z.ZodType<T>;
  handle: EventHandler<T>;
  log: Logger;
  /** Called after each commit, to wake the outbox relay. */
  onCommit?: () => void;
  /** @default {100} */
  prefetch?: number;
}

/** Consumes `options.queue` with exactly-once effects; see the module doc. */
export function startConsumer<T extends { event_id: string }>(
  broker: Broker,
  store: Store,
  options: ConsumerOptions<T>,
): Consumer {
  const { queue, schema, handle, log, onCommit, prefetch } = options;

  async function handleAll(tx: Tx, events: T[]): Promise<Array<() => void>> {
    const afterCommit: Array<() => void> = [];
    for (const event of events) {
      if (!(await recordInbox(tx, queue, event.event_id))) {
        afterCommit.push(() => log.info("skipped duplicate", { queue, event_id: event.event_id }));
        continue;
      }
      const after = await handle(tx, event);
      if (after) afterCommit.push(after);
    }
    return afterCommit;
  }

  async function deadLetter(delivery: Delivery, reason: string): Promise<Settlement> {
    try {
      await broker.deadLetter(queue, delivery, reason);
      log.warn("dead-lettered message", { queue, message_id: delivery.messageId, reason });
      return { action: "dead-letter", reason };
    } catch (error) {
      log.warn("cannot dead-letter message, requeueing", { queue, error: describeError(error) });
      return { action: "requeue", error: describeError(error) };
    }
  }

  /** When a batch fails, each event gets its own transaction so one bad event fails alone. */
  async function handleOneByOne(
    valid: Array<{ index: number; event: T; delivery: Delivery }>,
    settlements: Settlement[],
  ): Promise<void> {
    for (const { index, event, delivery } of valid) {
      try {
        const afterCommit = await store.transaction((tx) => handleAll(tx, [event]));
        afterCommit.forEach((run) => run());
        onCommit?.();
      } catch (error) {
        if (error instanceof PoisonMessageError) {
          settlements[index] = await deadLetter(delivery, error.message);
        } else {
          log.warn("handling failed, requeueing", {
            queue,
            event_id: event.event_id,
            error: describeError(error),
          });
          settlements[index] = { action: "requeue", error: describeError(error) };
        }
      }
    }
  }

  return broker.consume(queue, async (batch) => {
    const settlements: Settlement[] = batch.map(() => ({ action: "ack" }));
    const valid: Array<{ index: number; event: T; delivery: Delivery }> = [];
    await Promise.all(batch.map(async (delivery, index) => {
      const parsed = parseEvent(delivery.body, schema);
      if (parsed.ok) valid.push({ index, event: parsed.event, delivery });
      else settlements[index] = await deadLetter(delivery, parsed.reason);
    }));
    if (valid.length === 0) return settlements;
    valid.sort((a, b) => a.index - b.index);
    try {
      const afterCommit = await store.transaction((tx) => handleAll(tx, valid.map((v) => v.event)));
      afterCommit.forEach((run) => run());
      onCommit?.();
    } catch {
      await handleOneByOne(valid, settlements);
    }
    return settlements;
  }, { prefetch });
}
