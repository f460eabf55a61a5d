/**
 * The outbox relay (MassTransit's delivery service): publishes committed outbox rows with publisher
 * confirms, oldest first, and deletes each row only after the broker confirmed it. A crash between
 * the confirm and the delete publishes the row again; consumers' inboxes absorb that duplicate.
 *
 * Every commit that enqueued rows in this process wakes it (see `listenOutbox`), whoever committed,
 * so nothing has to remember to; a poll finds the rest (rows of an instance that stopped, on a
 * shared PostgreSQL). During an outage of the database the relay pauses, as the consumers do,
 * until it answers again.
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
  readOutboxBacklog,
} from "./outbox.ts";
import { metrics, watchOutbox } from "./metrics.ts";
import { describeError, type Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";
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
  // Aborts only a wait for the end of an outage: with the database up, the last round still runs.
  const stopping = new AbortController();
  let wakeUp: (() => void) | undefined;
  // A wake during a round must not be lost, or a new row would wait a whole poll interval.
  let woken = false;
  let failing = false;
  function wake(): void {
    woken = true;
    wakeUp?.();
  }
  const stopListening = listenOutbox(store, wake);
  broker.onConnect(wake);
  watchOutbox(() => store.read(readOutboxBacklog));

  async function publish(rows: OutboxMessage[]): Promise<void> {
    for (const row of rows) metrics.published.inc({ event_type: row.event_type });
    await publishTraced(rows.map(toMessage), (messages) => broker.publish(messages));
    for (const row of rows) metrics.confirmed.inc({ event_type: row.event_type });
  }

  /** @returns how many rows were published */
  async function publishBatch(): Promise<number> {
    const published = (rows: OutboxMessage[]) => rows.map((row) => row.sequence_number);
    if (store.dialect === "postgres") {
      // The rows stay locked through the publish, so the relays of several instances take
      // different rows.
      return await store.transaction(async (tx) => {
        const rows = await claimOutbox(tx, batchSize);
        if (rows.length > 0) await publish(rows);
        await markPublished(tx, published(rows));
        return rows.length;
      }, DELETE);
    }
    // One process owns a SQLite file: the rows are read without holding the write lock through
    // the publish, which would stall every consumer for a broker round trip.
    const rows = await store.read((tx) => claimOutbox(tx, batchSize));
    if (rows.length === 0) return 0;
    await publish(rows);
    await store.transaction((tx) => markPublished(tx, published(rows)), DELETE);
    return rows.length;
  }

  async function run(): Promise<void> {
    while (true) {
      let published = 0;
      woken = false;
      if (broker.connected) {
        try {
          published = await outages.retryThrough(publishBatch, stopping.signal);
          if (failing) log.info("outbox relay recovered");
          failing = false;
        } catch (error) {
          // Stopped while paused by an outage: what is pending stays in the outbox.
          if (error === stopping.signal.reason) return;
          if (!failing) {
            log.warn("cannot publish outbox, will retry", { error: describeError(error) });
          }
          failing = true;
        }
      }
      if (stopping.signal.aborted) return;
      if (published === batchSize || (woken && !failing)) continue;
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
