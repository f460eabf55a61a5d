import assert from "node:assert/strict";
import type { Store } from "./store.ts";
import { storeKinds } from "./testing/stores.ts";
import {
  claimOutbox,
  enqueueOutbox,
  listenOutbox,
  markPublished,
  OUTBOX_MIGRATION,
  watchOutbox,
} from "./outbox.ts";
import { inventoryOutcome, orderPlaced } from "./events.ts";
import { renderMetrics } from "./metrics.ts";

/** The values of the unlabelled gauge `name` in a scrape: one per store watched that answers. */
async function scrape(name: string): Promise<number[]> {
  return (await renderMetrics()).split("\n").filter((line) => line.startsWith(`${name} `))
    .map((line) => Number(line.split(" ")[1]));
}

function placed(orderId: string) {
  return orderPlaced({
    order_id: orderId,
    user_id: "u1",
    items: [{ sku: "burger", qty: 1 }],
    created_at: "2024-01-01T00:00:00.000Z",
  });
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("outbox", [OUTBOX_MIGRATION], (store) => fn(store));

  Deno.test(`enqueueOutbox() stores everything the relay needs to publish (${kind.name})`, async () => {
    await withStore(async (store) => {
      const event = placed("o1");
      await store.transaction((tx) =>
        enqueueOutbox(tx, [{ event, headers: { "x-trace-id": "t1" } }])
      );
      const [row] = await store.read((tx) => claimOutbox(tx, 10));
      assert.equal(row.event_id, event.event_id);
      assert.equal(row.event_type, "OrderPlaced");
      assert.equal(row.correlation_id, "o1");
      assert.deepEqual(JSON.parse(row.body), event);
      assert.deepEqual(JSON.parse(row.headers), { "x-trace-id": "t1" });
      assert.equal(row.created_at, event.created_at);
      assert.equal(typeof row.sequence_number, "number");
    });
  });

  Deno.test(`claimOutbox() returns rows in sequence_number order (${kind.name})`, async () => {
    await withStore(async (store) => {
      const events = [
        placed("o1"),
        inventoryOutcome({ order_id: "o2", user_id: "u2", items: [{ sku: "soda", qty: 1 }] }),
        placed("o3"),
      ];
      await store.transaction(async (tx) => {
        await enqueueOutbox(tx, events.map((event) => ({ event })));
      });
      const rows = await store.read((tx) => claimOutbox(tx, 10));
      assert.deepEqual(rows.map((row) => row.event_id), events.map((event) => event.event_id));
      const sequence = rows.map((row) => row.sequence_number);
      assert.deepEqual(sequence, [...sequence].sort((a, b) => a - b));
      assert.equal(new Set(sequence).size, 3);
    });
  });

  Deno.test(`enqueueOutbox() of a batch keeps its order and each entry's headers (${kind.name})`, async () => {
    await withStore(async (store) => {
      // More than one INSERT's worth, and not a power of two: 64 + 64 + 64 + 8 + 2 + 1 rows.
      const events = Array.from({ length: 203 }, (_, i) => placed(`o${i}`));
      await store.transaction((tx) =>
        enqueueOutbox(tx, events.map((event, i) => ({ event, headers: { n: String(i) } })))
      );
      const rows = await store.read((tx) => claimOutbox(tx, 300));
      assert.deepEqual(rows.map((row) => row.event_id), events.map((event) => event.event_id));
      assert.deepEqual(rows.map((row) => JSON.parse(row.headers).n), events.map((_, i) => `${i}`));
      assert.deepEqual(JSON.parse(rows[7].body), events[7]);
      assert.deepEqual(JSON.parse(rows[202].body), events[202]);
    });
  });

  Deno.test(`claimOutbox() returns at most limit rows, oldest first (${kind.name})`, async () => {
    await withStore(async (store) => {
      const events = Array.from({ length: 5 }, (_, i) => placed(`o${i}`));
      for (const event of events) await store.transaction((tx) => enqueueOutbox(tx, [{ event }]));
      const rows = await store.read((tx) => claimOutbox(tx, 2));
      assert.deepEqual(rows.map((row) => row.correlation_id), ["o0", "o1"]);
    });
  });

  Deno.test(`claimOutbox() returns nothing for an empty outbox (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.deepEqual(await store.read((tx) => claimOutbox(tx, 10)), []);
    });
  });

  Deno.test(`markPublished() removes only the rows it is given (${kind.name})`, async () => {
    await withStore(async (store) => {
      const events = Array.from({ length: 4 }, (_, i) => placed(`o${i}`));
      await store.transaction(async (tx) => {
        await enqueueOutbox(tx, events.map((event) => ({ event })));
      });
      const rows = await store.read((tx) => claimOutbox(tx, 10));
      await store.transaction((tx) =>
        markPublished(tx, [rows[0].sequence_number, rows[2].sequence_number])
      );
      const left = await store.read((tx) => claimOutbox(tx, 10));
      assert.deepEqual(left.map((row) => row.correlation_id), ["o1", "o3"]);
      await store.transaction((tx) => markPublished(tx, left.map((row) => row.sequence_number)));
      assert.deepEqual(await store.read((tx) => claimOutbox(tx, 10)), []);
    });
  });

  Deno.test(`markPublished() ignores rows that are already gone (${kind.name})`, async () => {
    await withStore(async (store) => {
      await store.transaction((tx) => enqueueOutbox(tx, [{ event: placed("o1") }]));
      const rows = await store.read((tx) => claimOutbox(tx, 10));
      const ids = rows.map((row) => row.sequence_number);
      await store.transaction((tx) => markPublished(tx, ids));
      await store.transaction((tx) => markPublished(tx, ids));
      assert.deepEqual(await store.read((tx) => claimOutbox(tx, 10)), []);
    });
  });

  Deno.test(`enqueueOutbox() throws for a second event with the same event_id (${kind.name})`, async () => {
    await withStore(async (store) => {
      const event = placed("o1");
      await store.transaction((tx) => enqueueOutbox(tx, [{ event }]));
      await assert.rejects(
        store.transaction((tx) =>
          enqueueOutbox(tx, [{ event: { ...event, correlation_id: "other" } }])
        ),
        /UNIQUE|unique constraint/,
      );
      const rows = await store.read((tx) => claimOutbox(tx, 10));
      assert.equal(rows.length, 1);
      assert.equal(rows[0].correlation_id, "o1");
    });
  });

  Deno.test(`enqueueOutbox() wakes listenOutbox()'s listeners when its transaction commits rows, only then (${kind.name})`, async () => {
    await withStore(async (store) => {
      let heard = 0;
      listenOutbox(store, () => heard++);
      await store.transaction((tx) => enqueueOutbox(tx, [{ event: placed("o1") }]));
      assert.equal(heard, 1);
      await store.transaction((tx) => enqueueOutbox(tx, []));
      await assert.rejects(store.transaction(async (tx) => {
        await enqueueOutbox(tx, [{ event: placed("o2") }]);
        throw new Error("order insert failed");
      }));
      assert.equal(heard, 1);
    });
  });

  Deno.test(`watchOutbox() reports at each scrape the rows not yet published and the age of the oldest (${kind.name})`, async () => {
    await withStore(async (store) => {
      watchOutbox(store);
      assert.deepEqual(await scrape("campus_food_outbox_pending"), [0]);
      assert.deepEqual(await scrape("campus_food_outbox_oldest_age_seconds"), [0]);
      const writtenAgo = (orderId: string, ms: number) => ({
        event: { ...placed(orderId), created_at: new Date(Date.now() - ms).toISOString() },
      });
      await store.transaction((tx) =>
        enqueueOutbox(tx, [writtenAgo("o1", 60_000), writtenAgo("o2", 0)])
      );
      assert.deepEqual(await scrape("campus_food_outbox_pending"), [2]);
      const [age] = await scrape("campus_food_outbox_oldest_age_seconds");
      assert.ok(age >= 60 && age < 120, `age ${age}`);
    });
  });

  Deno.test(`enqueueOutbox() writes nothing when its transaction rolls back (${kind.name})`, async () => {
    await withStore(async (store) => {
      await assert.rejects(store.transaction(async (tx) => {
        await enqueueOutbox(tx, [{ event: placed("o1") }]);
        throw new Error("order insert failed");
      }));
      assert.deepEqual(await store.read((tx) => claimOutbox(tx, 10)), []);
    });
  });
}
