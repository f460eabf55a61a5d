import assert from "node:assert/strict";
import type { Store, Tx } from "./store.ts";
import { storeKinds } from "./testing/stores.ts";
import { INBOX_MIGRATION, recordInbox } from "./inbox.ts";

async function recordOne(tx: Tx, consumer: string, eventId: string): Promise<boolean> {
  return (await recordInbox(tx, consumer, [eventId]))[0];
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("inbox", [INBOX_MIGRATION], (store) => fn(store));

  Deno.test(`recordInbox() returns true for an event the consumer has not seen (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.equal(await store.transaction((tx) => recordOne(tx, "order-placed", "e1")), true);
      const rows = await store.read((tx) =>
        tx.all<{ consumer: string; event_id: string; received_at: string }>("SELECT * FROM inbox")
      );
      assert.equal(rows.length, 1);
      assert.equal(rows[0].consumer, "order-placed");
      assert.equal(rows[0].event_id, "e1");
      assert.ok(!Number.isNaN(Date.parse(rows[0].received_at)));
    });
  });

  Deno.test(`recordInbox() returns false for a duplicate event_id of the same consumer (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.equal(await store.transaction((tx) => recordOne(tx, "order-placed", "e1")), true);
      assert.equal(await store.transaction((tx) => recordOne(tx, "order-placed", "e1")), false);
      const rows = await store.read((tx) => tx.all("SELECT * FROM inbox"));
      assert.equal(rows.length, 1);
    });
  });

  Deno.test(`recordInbox() returns false for a duplicate within one transaction (${kind.name})`, async () => {
    await withStore(async (store) => {
      const results = await store.transaction(async (tx) => [
        await recordOne(tx, "order-placed", "e1"),
        await recordOne(tx, "order-placed", "e1"),
      ]);
      assert.deepEqual(results, [true, false]);
    });
  });

  Deno.test(`recordInbox() of a batch says which events are new, in order (${kind.name})`, async () => {
    await withStore(async (store) => {
      await store.transaction((tx) => recordInbox(tx, "order-placed", ["seen"]));
      const fresh = await store.transaction((tx) =>
        recordInbox(tx, "order-placed", ["e1", "seen", "e2", "e1", "e3"])
      );
      assert.deepEqual(fresh, [true, false, true, false, true]);
      const rows = await store.read((tx) =>
        tx.all<{ event_id: string }>("SELECT event_id FROM inbox ORDER BY event_id")
      );
      assert.deepEqual(rows.map((row) => row.event_id), ["e1", "e2", "e3", "seen"]);
      assert.deepEqual(await store.transaction((tx) => recordInbox(tx, "order-placed", [])), []);
    });
  });

  Deno.test(`recordInbox() returns true for the same event_id at another consumer (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.equal(
        await store.transaction((tx) => recordOne(tx, "inventory-reserved", "e1")),
        true,
      );
      assert.equal(await store.transaction((tx) => recordOne(tx, "order-confirmed", "e1")), true);
      const rows = await store.read((tx) => tx.all("SELECT * FROM inbox"));
      assert.equal(rows.length, 2);
    });
  });

  Deno.test(`recordInbox() forgets the record when its transaction rolls back (${kind.name})`, async () => {
    await withStore(async (store) => {
      await assert.rejects(store.transaction(async (tx) => {
        assert.equal(await recordOne(tx, "order-placed", "e1"), true);
        throw new Error("handler failed");
      }));
      // The redelivery must be handled, not skipped as a duplicate.
      assert.equal(await store.transaction((tx) => recordOne(tx, "order-placed", "e1")), true);
    });
  });
}
