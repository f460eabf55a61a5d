import assert from "node:assert/strict";
import { openStore, type Store } from "./store.ts";
import { INBOX_MIGRATION, recordInbox } from "./inbox.ts";

async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "inbox_test_" });
  try {
    const store = await openStore(dir, "inbox", { migrations: [INBOX_MIGRATION] });
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("recordInbox() returns true for an event the consumer has not seen", async () => {
  await withStore(async (store) => {
    assert.equal(await store.transaction((tx) => recordInbox(tx, "order-placed", "e1")), true);
    const rows = await store.read((tx) =>
      tx.all<{ consumer: string; event_id: string; received_at: string }>("SELECT * FROM inbox")
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].consumer, "order-placed");
    assert.equal(rows[0].event_id, "e1");
    assert.ok(!Number.isNaN(Date.parse(rows[0].received_at)));
  });
});

Deno.test("recordInbox() returns false for a duplicate event_id of the same consumer", async () => {
  await withStore(async (store) => {
    assert.equal(await store.transaction((tx) => recordInbox(tx, "order-placed", "e1")), true);
    assert.equal(await store.transaction((tx) => recordInbox(tx, "order-placed", "e1")), false);
    const rows = await store.read((tx) => tx.all("SELECT * FROM inbox"));
    assert.equal(rows.length, 1);
  });
});

Deno.test("recordInbox() returns false for a duplicate within one transaction", async () => {
  await withStore(async (store) => {
    const results = await store.transaction(async (tx) => [
      await recordInbox(tx, "order-placed", "e1"),
      await recordInbox(tx, "order-placed", "e1"),
    ]);
    assert.deepEqual(results, [true, false]);
  });
});

Deno.test("recordInbox() returns true for the same event_id at another consumer", async () => {
  await withStore(async (store) => {
    assert.equal(
      await store.transaction((tx) => recordInbox(tx, "inventory-reserved", "e1")),
      true,
    );
    assert.equal(await store.transaction((tx) => recordInbox(tx, "order-status", "e1")), true);
    const rows = await store.read((tx) => tx.all("SELECT * FROM inbox"));
    assert.equal(rows.length, 2);
  });
});

Deno.test("recordInbox() forgets the record when its transaction rolls back", async () => {
  await withStore(async (store) => {
    await assert.rejects(store.transaction(async (tx) => {
      assert.equal(await recordInbox(tx, "order-placed", "e1"), true);
      throw new Error("handler failed");
    }));
    // The redelivery must be handled, not skipped as a duplicate.
    assert.equal(await store.transaction((tx) => recordInbox(tx, "order-placed", "e1")), true);
  });
});
