import assert from "node:assert/strict";
import { openStore, type Store } from "./store.ts";
import { STORE_KINDS } from "./_test_stores.ts";
import { fakeBroker } from "./_test_broker.ts";
import { recordingLogger } from "./_test_log.ts";
import { mountTmpfs, TMPFS_UNAVAILABLE } from "./_test_tmpfs.ts";
import { claimOutbox, enqueueOutbox, OUTBOX_MIGRATION } from "./outbox.ts";
import { orderPlaced } from "./events.ts";
import { EXCHANGE } from "./topology.ts";
import { PAUSED_MSG, RESUMED_MSG, watchOutages } from "./outage.ts";
import { startOutboxRelay } from "./relay.ts";

/** Longer than any test runs: a row published within a test was published because of a wake. */
const NO_POLL = { pollIntervalMs: 60_000 };

function placed(orderId: string) {
  return orderPlaced({
    order_id: orderId,
    user_id: "u1",
    items: [{ sku: "burger", qty: 1 }],
    created_at: "2024-01-01T00:00:00.000Z",
  });
}

function enqueue(store: Store, ...orderIds: string[]): Promise<void> {
  return store.transaction((tx) =>
    enqueueOutbox(tx, orderIds.map((id) => ({ event: placed(id), headers: { traceparent: id } })))
  );
}

/** The orders of the rows in the outbox, oldest first, also those a relay holds locked. */
async function outboxRows(store: Store): Promise<string[]> {
  const rows = await store.read((tx) =>
    tx.all<{ correlation_id: string }>("SELECT correlation_id FROM outbox ORDER BY sequence_number")
  );
  return rows.map((row) => row.correlation_id);
}

for (const kind of STORE_KINDS) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("relay", [OUTBOX_MIGRATION], (store) => fn(store));

  Deno.test(`startOutboxRelay() publishes a row as soon as its transaction commits, then deletes it (${kind.name})`, async () => {
    await withStore(async (store) => {
      const broker = fakeBroker();
      const { log } = recordingLogger();
      const outages = watchOutages(store, { log });
      const relay = startOutboxRelay(store, broker, { log, outages, ...NO_POLL });
      try {
        const event = placed("o1");
        await store.transaction((tx) =>
          enqueueOutbox(tx, [{ event, headers: { traceparent: "t" } }])
        );
        const [message] = await broker.until(
          "the publish",
          () => broker.published.length > 0 && broker.published,
        );
        assert.deepEqual(message, {
          exchange: EXCHANGE,
          routingKey: "OrderPlaced",
          body: JSON.stringify(event),
          messageId: event.event_id,
          correlationId: "o1",
          type: "OrderPlaced",
          timestamp: Date.parse(event.created_at!),
          headers: { traceparent: "t" },
        });
      } finally {
        await relay.stop();
        await outages.stop();
      }
      assert.equal(broker.publishCalls, 1);
      assert.deepEqual(await outboxRows(store), []);
    });
  });

  Deno.test(`startOutboxRelay() publishes oldest first and deletes rows only once the broker confirmed them (${kind.name})`, async () => {
    await withStore(async (store) => {
      await enqueue(store, "o1");
      await enqueue(store, "o2", "o3");
      const broker = fakeBroker();
      const confirm = Promise.withResolvers<void>();
      broker.held = confirm.promise;
      const { log } = recordingLogger();
      const outages = watchOutages(store, { log });
      const relay = startOutboxRelay(store, broker, { log, outages, ...NO_POLL });
      try {
        await broker.until("a publish", () => broker.publishCalls === 1);
        assert.deepEqual(await outboxRows(store), ["o1", "o2", "o3"], "kept until confirmed");
        confirm.resolve();
        await broker.until("the confirms", () => broker.published.length === 3);
      } finally {
        await relay.stop();
        await outages.stop();
      }
      assert.deepEqual(broker.published.map((m) => m.correlationId), ["o1", "o2", "o3"]);
      assert.equal(broker.publishCalls, 1, "one round took all three");
      assert.deepEqual(await outboxRows(store), []);
    });
  });

  Deno.test(`startOutboxRelay() keeps rows the broker did not confirm and publishes them on a later round (${kind.name})`, async () => {
    await withStore(async (store) => {
      const broker = fakeBroker();
      broker.failure = new Error("PRECONDITION_FAILED");
      const { log, lines } = recordingLogger();
      const outages = watchOutages(store, { log });
      const relay = startOutboxRelay(store, broker, { log, outages, pollIntervalMs: 10 });
      try {
        await enqueue(store, "o1");
        await broker.until("three nacked publishes", () => broker.publishCalls === 3);
        assert.deepEqual(await outboxRows(store), ["o1"]);
        assert.deepEqual(broker.published, []);
        broker.failure = undefined;
        await broker.until("the publish", () => broker.published.length === 1);
      } finally {
        await relay.stop();
        await outages.stop();
      }
      assert.deepEqual(await outboxRows(store), []);
      assert.deepEqual(lines, [
        "warn cannot publish outbox, will retry",
        "info outbox relay recovered",
      ]);
      assert.equal(outages.reason, undefined, "a nack is no outage of the database");
    });
  });

  Deno.test(`startOutboxRelay() publishes nothing while the broker is disconnected, and what waits once it connects (${kind.name})`, async () => {
    await withStore(async (store) => {
      const broker = fakeBroker();
      broker.connected = false;
      const { log } = recordingLogger();
      const outages = watchOutages(store, { log });
      const relay = startOutboxRelay(store, broker, { log, outages, ...NO_POLL });
      try {
        await enqueue(store, "o1");
        // The commit's wake ran before the transaction resolved; give its round a turn to act.
        await store.read((tx) => claimOutbox(tx, 1));
        assert.equal(broker.publishCalls, 0);
        broker.connected = true;
        broker.reconnect();
        await broker.until("the publish", () => broker.published.length === 1);
      } finally {
        await relay.stop();
        await outages.stop();
      }
      assert.deepEqual(await outboxRows(store), []);
    });
  });

  Deno.test(`startOutboxRelay() stop() publishes what is pending before it resolves (${kind.name})`, async () => {
    await withStore(async (store) => {
      const broker = fakeBroker();
      broker.connected = false;
      const { log } = recordingLogger();
      const outages = watchOutages(store, { log });
      const relay = startOutboxRelay(store, broker, { log, outages, ...NO_POLL });
      await enqueue(store, "o1", "o2");
      // Connected again, but nothing told the relay: only the last round of stop() publishes.
      broker.connected = true;
      await relay.stop();
      await outages.stop();
      assert.deepEqual(broker.published.map((m) => m.correlationId), ["o1", "o2"]);
      assert.deepEqual(await outboxRows(store), []);
    });
  });
}

Deno.test({
  name:
    "startOutboxRelay() pauses while the disk is full, keeps the rows it could not delete, and deletes them once there is room (sqlite)",
  ignore: TMPFS_UNAVAILABLE !== undefined,
  fn: async () => {
    const disk = await mountTmpfs(4);
    const store = await openStore(disk.path, "relay", { migrations: [OUTBOX_MIGRATION] });
    const broker = fakeBroker();
    const { log, lines } = recordingLogger();
    const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
    const paused = Promise.withResolvers<void>();
    outages.onChange((on) => on && paused.resolve());
    try {
      await enqueue(store, "o1");
      await disk.fill();
      const relay = startOutboxRelay(store, broker, { log, outages, ...NO_POLL });
      // Published, but its delete cannot be written: the relay pauses with the row kept.
      await paused.promise;
      assert.deepEqual(await outboxRows(store), ["o1"]);
      const whilePaused = broker.publishCalls;
      await disk.free();
      await outages.recovered();
      // The round runs again from the start: the row goes out a second time, then is deleted.
      await broker.until("the publish after the outage", () => broker.published.length === 2);
      await relay.stop();
      assert.equal(whilePaused, 1);
      assert.deepEqual(await outboxRows(store), []);
      assert.equal(broker.published[0].messageId, broker.published[1].messageId);
      assert.deepEqual(lines, [`warn ${PAUSED_MSG}`, `info ${RESUMED_MSG}`]);
    } finally {
      await outages.stop();
      await store.close();
      await disk.unmount();
    }
  },
});
