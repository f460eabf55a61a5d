import assert from "node:assert/strict";
import type { Store } from "./store.ts";
import { storeKinds } from "./testing/stores.ts";
import { type FakeBroker, fakeBroker } from "./testing/fake_broker.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { tmpfsUnavailable, withStoreOnTmpfs } from "./testing/tmpfs.ts";
import { enqueueOutbox, OUTBOX_MIGRATION } from "./outbox.ts";
import { inventoryOutcome } from "./events.ts";
import { EXCHANGE } from "./topology.ts";
import { type OutageWatch, PAUSED_MSG, RESUMED_MSG, watchOutages } from "./outage.ts";
import { type OutboxRelay, type RelayOptions, startOutboxRelay } from "./relay.ts";
import { renderMetrics } from "./metrics.ts";

/** Longer than any test runs: a row published within a test was published because of a wake. */
const NO_POLL = 60_000;

function outcome(orderId: string) {
  return inventoryOutcome({ order_id: orderId, user_id: "u1", items: [{ sku: "burger", qty: 1 }] });
}

function enqueue(store: Store, ...orderIds: string[]): Promise<void> {
  return store.transaction((tx) =>
    enqueueOutbox(tx, orderIds.map((id) => ({ event: outcome(id), headers: { traceparent: id } })))
  );
}

/** The orders of the rows in the outbox, oldest first, also those a relay holds locked. */
async function outboxRows(store: Store): Promise<string[]> {
  const rows = await store.read((tx) =>
    tx.all<{ correlation_id: string }>("SELECT correlation_id FROM outbox ORDER BY sequence_number")
  );
  return rows.map((row) => row.correlation_id);
}

/** The events of `type` counted so far as published and as confirmed. */
async function countedEvents(type: string): Promise<{ published: number; confirmed: number }> {
  const text = await renderMetrics();
  const count = (name: string) =>
    Number(text.match(new RegExp(`^${name}\\{event_type="${type}"\\} (\\d+)$`, "m"))?.[1] ?? 0);
  return {
    published: count("campus_food_events_published_total"),
    confirmed: count("campus_food_events_confirmed_total"),
  };
}

interface Fixture {
  broker: FakeBroker;
  relay: OutboxRelay;
  outages: OutageWatch;
  lines: string[];
}

/**
 * Runs `fn` with a relay of `store` through a fake broker, set up by `prepare` before the relay
 * starts; stops the relay after (again, if `fn` did).
 */
async function withRelay(
  store: Store,
  options: Partial<RelayOptions> & { prepare?: (broker: FakeBroker) => void },
  fn: (fixture: Fixture) => Promise<void>,
): Promise<void> {
  const { prepare, ...relayOptions } = options;
  const broker = fakeBroker();
  prepare?.(broker);
  const { log, lines } = recordingLogger();
  const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
  const relay = startOutboxRelay(store, broker, {
    log,
    outages,
    pollIntervalMs: NO_POLL,
    ...relayOptions,
  });
  try {
    await fn({ broker, relay, outages, lines });
  } finally {
    await relay.stop();
    await outages.stop();
  }
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("relay", [OUTBOX_MIGRATION], (store) => fn(store));

  Deno.test(`startOutboxRelay() publishes a row as soon as its transaction commits, then deletes it (${kind.name})`, async () => {
    await withStore(async (store) => {
      await withRelay(store, {}, async ({ broker, relay }) => {
        const event = outcome("o1");
        await store.transaction((tx) =>
          enqueueOutbox(tx, [{ event, headers: { traceparent: "t" } }])
        );
        const [message] = await broker.until(
          "the publish",
          () => broker.published.length > 0 && broker.published,
        );
        assert.deepEqual(message, {
          exchange: EXCHANGE,
          routingKey: "InventoryReserved",
          body: JSON.stringify(event),
          messageId: event.event_id,
          correlationId: "o1",
          type: "InventoryReserved",
          timestamp: Date.parse(event.created_at),
          headers: { traceparent: "t" },
        });
        await relay.stop();
        assert.equal(broker.publishCalls, 1);
        assert.deepEqual(await outboxRows(store), []);
      });
    });
  });

  Deno.test(`startOutboxRelay() publishes oldest first and deletes rows only once the broker confirmed them (${kind.name})`, async () => {
    await withStore(async (store) => {
      await enqueue(store, "o1");
      await enqueue(store, "o2", "o3");
      const confirm = Promise.withResolvers<void>();
      const prepare = (broker: FakeBroker) => broker.held = confirm.promise;
      await withRelay(store, { prepare }, async ({ broker, relay }) => {
        await broker.until("a publish", () => broker.publishCalls === 1);
        assert.deepEqual(await outboxRows(store), ["o1", "o2", "o3"], "kept until confirmed");
        confirm.resolve();
        await broker.until("the confirms", () => broker.published.length === 3);
        await relay.stop();
        assert.deepEqual(broker.published.map((m) => m.correlationId), ["o1", "o2", "o3"]);
        assert.equal(broker.publishCalls, 1, "one round took all three");
        assert.deepEqual(await outboxRows(store), []);
      });
    });
  });

  Deno.test(`startOutboxRelay() keeps rows the broker did not confirm and publishes them on a later round (${kind.name})`, async () => {
    await withStore(async (store) => {
      const prepare = (broker: FakeBroker) => broker.failure = new Error("PRECONDITION_FAILED");
      await withRelay(store, { prepare, pollIntervalMs: 10 }, async (fixture) => {
        const { broker, relay, outages, lines } = fixture;
        await enqueue(store, "o1");
        await broker.until("three nacked publishes", () => broker.publishCalls === 3);
        assert.deepEqual(await outboxRows(store), ["o1"]);
        assert.deepEqual(broker.published, []);
        broker.failure = undefined;
        await broker.until("the publish", () => broker.published.length === 1);
        await relay.stop();
        assert.deepEqual(await outboxRows(store), []);
        // One line for the streak of failures, one for its end.
        assert.deepEqual(lines, [
          "warn cannot publish outbox, will retry",
          "info outbox relay recovered",
        ]);
        assert.equal(outages.reason, undefined, "a nack is no outage of the database");
      });
    });
  });

  Deno.test(`startOutboxRelay() counts each event it published, and again once the broker confirmed it (${kind.name})`, async () => {
    await withStore(async (store) => {
      const before = await countedEvents("InventoryReserved");
      const prepare = (broker: FakeBroker) => broker.failure = new Error("PRECONDITION_FAILED");
      await withRelay(store, { prepare, pollIntervalMs: 10 }, async ({ broker, relay }) => {
        await enqueue(store, "o1");
        await broker.until("two nacked publishes", () => broker.publishCalls === 2);
        broker.failure = undefined;
        await broker.until("the publish", () => broker.published.length === 1);
        await relay.stop();
        assert.deepEqual(await countedEvents("InventoryReserved"), {
          published: before.published + broker.publishCalls,
          confirmed: before.confirmed + 1,
        });
      });
    });
  });

  Deno.test(`startOutboxRelay() publishes nothing while the broker is disconnected, and what waits once it connects (${kind.name})`, async () => {
    await withStore(async (store) => {
      const prepare = (broker: FakeBroker) => broker.connected = false;
      await withRelay(store, { prepare }, async ({ broker }) => {
        await enqueue(store, "o1");
        // The commit's wake ran before the transaction resolved; a read lets its round go by.
        await outboxRows(store);
        assert.equal(broker.publishCalls, 0);
        broker.connected = true;
        broker.reconnect();
        await broker.until("the publish", () => broker.published.length === 1);
      });
    });
  });

  Deno.test(`startOutboxRelay() stop() publishes what is pending before it resolves (${kind.name})`, async () => {
    await withStore(async (store) => {
      const prepare = (broker: FakeBroker) => broker.connected = false;
      await withRelay(store, { prepare }, async ({ broker, relay }) => {
        await enqueue(store, "o1", "o2");
        // Connected again, but nothing told the relay: only the last round of stop() publishes.
        broker.connected = true;
        await relay.stop();
        assert.deepEqual(broker.published.map((m) => m.correlationId), ["o1", "o2"]);
        assert.deepEqual(await outboxRows(store), []);
      });
    });
  });
}

Deno.test({
  name:
    "startOutboxRelay() pauses while the disk is full, keeps the rows it could not delete, and deletes them once there is room (sqlite)",
  ignore: (await tmpfsUnavailable()) !== undefined,
  fn: () =>
    withStoreOnTmpfs("relay", [OUTBOX_MIGRATION], async (store, disk) => {
      await enqueue(store, "o1");
      await disk.fill();
      await withRelay(store, {}, async ({ broker, relay, outages, lines }) => {
        const paused = Promise.withResolvers<void>();
        outages.onChange((on) => on && paused.resolve());
        // Published at start, but its delete cannot be written: the relay pauses with the row kept.
        await paused.promise;
        assert.deepEqual(await outboxRows(store), ["o1"]);
        assert.equal(broker.publishCalls, 1);
        await disk.free();
        await outages.recovered();
        // The round runs again from the start: the row goes out a second time, then is deleted.
        await broker.until("the publish after the outage", () => broker.published.length === 2);
        await relay.stop();
        assert.deepEqual(await outboxRows(store), []);
        assert.equal(broker.published[0].messageId, broker.published[1].messageId);
        assert.deepEqual(lines, [`warn ${PAUSED_MSG}`, `info ${RESUMED_MSG}`]);
      });
    }),
});
