/**
 * The outbox relay: publishes committed outbox rows with publisher confirms, oldest first, and
 * deletes each row only after the broker confirmed it. A crash between the confirm and the delete
 * publishes the row again; consumers' inboxes absorb that duplicate. During an outage of the
 * database the relay pauses, as the consumers do, until it answers again.
 * @module
 */
import type { Broker } from "./broker.ts";
import type { Store } from "./store.ts";
import { EXCHANGE } from "./topology.ts";
import { outboxBacklog, relayOutbox } from "./outbox.ts";
import { metrics, watchOutbox } from "./metrics.ts";
import { describeError, type Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";

/** Options for {@linkcode startOutboxRelay}. */
export interface RelayOptions {
  log: Logger;
  /** The store's outages, which pause the relay. */
  outages: OutageWatch;
  /** Rows published per round, all in flight at once. @default {500} */
  batchSize?: number;
  /** How often to look for rows when nobody called `wake()`, in milliseconds. @default {1000} */
  pollIntervalMs?: number;
}

/** A running relay. */
export interface OutboxRelay {
  /** Publishes soon: call after a commit that wrote to the outbox. */
  wake(): void;
  /** Publishes what is pending (if the broker is up) and stops. */
  stop(): Promise<void>;
}

/** Starts publishing `store`'s outbox through `broker`. */
export function startOutboxRelay(store: Store, broker: Broker, options: RelayOptions): OutboxRelay {
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
  broker.onConnect(wake);
  watchOutbox(() => store.read(outboxBacklog));

  /** @returns how many rows were published */
  function publishBatch(): Promise<number> {
    return relayOutbox(store, batchSize, async (rows) => {
      for (const row of rows) metrics.published.inc({ event_type: row.event_type });
      await broker.publish(rows.map((row) => ({
        exchange: EXCHANGE,
        routingKey: row.event_type,
        body: row.body,
        messageId: row.event_id,
        correlationId: row.correlation_id,
        type: row.event_type,
        timestamp: Date.parse(row.created_at) || Date.now(),
        headers: JSON.parse(row.headers),
      })));
      for (const row of rows) metrics.confirmed.inc({ event_type: row.event_type });
    });
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
    wake,
    async stop() {
      stopping.abort();
      wake();
      await running;
    },
  };
}
