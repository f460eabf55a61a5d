/**
 * The outbox relay (MassTransit's delivery service): publishes committed outbox rows with publisher
 * confirms, oldest first, and deletes each row only after the broker confirmed it. A crash between
 * the confirm and the delete publishes the row again; consumers' inboxes absorb that duplicate.
 *
 * It is a drain loop (`drain_loop.ts`): every commit that enqueued rows in this process wakes it,
 * whoever committed, so nothing has to remember to, and so does each connect of the broker; a poll
 * finds the rest (rows of an instance that stopped, on a shared PostgreSQL). During an outage of
 * the database the relay pauses, as the consumers do, until it answers again.
 * @module
 */
import type { Broker, OutgoingMessage } from "./broker.ts";
import type { Store } from "./store.ts";
import { EXCHANGE } from "./topology.ts";
import {
  claimOutbox,
  listenOutbox,
  markPublished,
  type OutboxMessage,
  watchOutbox,
} from "./outbox.ts";
import { counter } from "./metrics.ts";
import type { Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";
import { startDrainLoop } from "./drain_loop.ts";
import { publishTraced } from "./tracing.ts";

/** What the relay needs of the broker. */
export type RelayBroker = Pick<Broker, "connected" | "publish" | "onConnect">;

/** Options for {@linkcode startOutboxRelay}. */
export interface RelayOptions {
  log: Logger;
  /** The store's outages, which pause the relay. */
  outages: OutageWatch;
  /** Rows published per round, all in flight at once. @default {500} */
  batchSize?: number;
  /** How often to look for rows when no commit woke the relay, in milliseconds. @default {1000} */
  pollIntervalMs?: number;
}

/** A running relay. */
export interface OutboxRelay {
  /** Publishes what is pending (if the broker is up) and stops. */
  stop(): Promise<void>;
}

const publishedEvents = counter("events_published_total", "Events the outbox relay published", [
  "event_type",
]);
const confirmedEvents = counter(
  "events_confirmed_total",
  "Published events the broker confirmed",
  ["event_type"],
);

/**
 * Deleting confirmed rows need not wait for the disk: a delete lost to a power cut publishes its
 * event again, and the inboxes absorb it.
 */
const DELETE = { durable: false } as const;

/** Starts publishing `store`'s outbox through `broker`. */
export function startOutboxRelay(
  store: Store,
  broker: RelayBroker,
  options: RelayOptions,
): OutboxRelay {
  const { log, outages, batchSize = 500, pollIntervalMs = 1000 } = options;

  // Rounds: one batch each, while the broker is connected; a full batch means more may wait.
  const loop = startDrainLoop(async () => await publishBatch() === batchSize, {
    log,
    outages,
    pollIntervalMs,
    messages: { failing: "cannot publish outbox, will retry", recovered: "outbox relay recovered" },
    canRun: () => broker.connected,
    lastRoundOnStop: true,
  });
  // What wakes it: the commit of every transaction that enqueued rows, and each connect.
  const stopListening = listenOutbox(store, loop.wake);
  broker.onConnect(loop.wake);
  watchOutbox(store);

  /**
   * Claims the oldest rows, publishes them and deletes them once confirmed.
   * @returns how many rows were published
   */
  async function publishBatch(): Promise<number> {
    const sequenceNumbers = (rows: OutboxMessage[]) => rows.map((row) => row.sequence_number);
    if (store.dialect === "postgres") {
      // The rows stay locked through the publish, so the relays of several instances take
      // different rows.
      return await store.transaction(async (tx) => {
        const rows = await claimOutbox(tx, batchSize);
        if (rows.length > 0) await publish(rows);
        await markPublished(tx, sequenceNumbers(rows));
        return rows.length;
      }, DELETE);
    }
    // One process owns a SQLite file: the rows are read without holding the write lock through
    // the publish, which would stall every consumer for a broker round trip.
    const rows = await store.read((tx) => claimOutbox(tx, batchSize));
    if (rows.length === 0) return 0;
    await publish(rows);
    await store.transaction((tx) => markPublished(tx, sequenceNumbers(rows)), DELETE);
    return rows.length;
  }

  /** Publishes `rows` and resolves once the broker confirmed every one. */
  async function publish(rows: OutboxMessage[]): Promise<void> {
    for (const row of rows) publishedEvents.inc({ event_type: row.event_type });
    await publishTraced(rows.map(toMessage), (messages) => broker.publish(messages));
    for (const row of rows) confirmedEvents.inc({ event_type: row.event_type });
  }

  return {
    async stop() {
      stopListening();
      await loop.stop();
    },
  };
}

/** The message that publishes `row`: its event to the events exchange, keyed by its type. */
function toMessage(row: OutboxMessage): OutgoingMessage {
  return {
    exchange: EXCHANGE,
    routingKey: row.event_type,
    body: row.body,
    messageId: row.event_id,
    correlationId: row.correlation_id,
    type: row.event_type,
    timestamp: Date.parse(row.created_at) || Date.now(),
    headers: JSON.parse(row.headers),
  };
}
