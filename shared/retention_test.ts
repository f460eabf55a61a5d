import assert from "node:assert/strict";
import { type Store, tryLockForTransaction } from "./store.ts";
import { storeKinds } from "./testing/stores.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION, inboxRetention } from "./inbox.ts";
import { deleteExpired } from "./retention.ts";

const HOUR_MS = 3_600_000;
const POSTGRES_STORE = (await storeKinds()).find((kind) => kind.name === "postgres");
const NOW = Date.parse("2026-11-27T12:00:00.000Z");

/** Inserts `count` inbox rows received `ageMs` before NOW, with ids `<prefix>-<n>`. */
async function insertInbox(
  store: Store,
  prefix: string,
  count: number,
  ageMs: number,
): Promise<void> {
  const receivedAt = new Date(NOW - ageMs).toISOString();
  await store.transaction(async (tx) => {
    for (let i = 0; i < count; i++) {
      await tx.run(
        "INSERT INTO inbox (consumer, event_id, received_at) VALUES (?, ?, ?)",
        "order-placed",
        `${prefix}-${i}`,
        receivedAt,
      );
    }
  });
}

function remaining(store: Store): Promise<string[]> {
  return store.read(async (tx) =>
    (await tx.all<{ event_id: string }>("SELECT event_id FROM inbox ORDER BY event_id"))
      .map((row) => row.event_id)
  );
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("retention", [INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION], (store) => fn(store));

  Deno.test(`deleteExpired() deletes rows older than the window in batches, and only those (${kind.name})`, async () => {
    await withStore(async (store) => {
      await insertInbox(store, "old", 23, 25 * HOUR_MS);
      await insertInbox(store, "new", 3, 23 * HOUR_MS);
      const rule = inboxRetention(24 * HOUR_MS);
      assert.equal(await deleteExpired(store, rule, { now: NOW, batchSize: 10 }), 23);
      assert.deepEqual(await remaining(store), ["new-0", "new-1", "new-2"]);
      assert.equal(await deleteExpired(store, rule, { now: NOW, batchSize: 10 }), 0);
    });
  });

  Deno.test(`deleteExpired() run by two instances at once deletes each row once (${kind.name})`, async () => {
    await withStore(async (store) => {
      await insertInbox(store, "old", 40, 2 * HOUR_MS);
      const rule = inboxRetention(HOUR_MS);
      const [a, b] = await Promise.all([
        deleteExpired(store, rule, { now: NOW, batchSize: 5 }),
        deleteExpired(store, rule, { now: NOW, batchSize: 5 }),
      ]);
      assert.equal(a + b, 40);
      assert.deepEqual(await remaining(store), []);
    });
  });
}

Deno.test({
  name:
    "deleteExpired() skips a round while another instance cleans the table, but not while another service cleans its own (postgres)",
  ignore: POSTGRES_STORE === undefined,
  async fn() {
    const migrations = [INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION];
    await POSTGRES_STORE!.with("retention_a", migrations, async (store, reopen) => {
      const instance = await reopen();
      await POSTGRES_STORE!.with("retention_b", migrations, async (otherService) => {
        await insertInbox(store, "old", 5, 2 * HOUR_MS);
        const rule = inboxRetention(HOUR_MS);
        let release!: () => void;
        const held = new Promise<void>((resolve) => release = resolve);
        let locked!: () => void;
        const lockTaken = new Promise<void>((resolve) => locked = resolve);
        const holding = otherService.transaction(async (tx) => {
          assert.ok(await tryLockForTransaction(tx, "retention inbox"));
          locked();
          await held;
        });
        try {
          await lockTaken;
          assert.equal(await deleteExpired(store, rule, { now: NOW }), 5);
          await insertInbox(store, "older", 3, 3 * HOUR_MS);
          await instance.transaction(async (tx) => {
            assert.ok(await tryLockForTransaction(tx, "retention inbox"));
            assert.equal(await deleteExpired(store, rule, { now: NOW }), 0);
          });
        } finally {
          release();
          await holding;
        }
        assert.equal(await deleteExpired(store, rule, { now: NOW }), 3);
      });
    });
  },
});
