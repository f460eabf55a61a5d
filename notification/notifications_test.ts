/**
 * Notification's table: what supersedes what, and on PostgreSQL, that recording a batch reads
 * only the notifications of its orders, however large the table grew.
 */
import assert from "node:assert/strict";
import type { Tx } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import {
  type Notification,
  NOTIFICATION_MIGRATIONS,
  type NotificationKind,
  recordNotifications,
} from "./notifications.ts";

function notification(orderId: string, kind: NotificationKind): Notification {
  return { order_id: orderId, user_id: "u1", kind, message: kind, created_at: "" };
}

for (const kind of await storeKinds()) {
  Deno.test(`recordNotifications() records what nothing supersedes, once each (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const first = await store.transaction((tx) =>
        recordNotifications(tx, [
          notification("o1", "order_confirmed"),
          notification("o2", "order_expired"),
        ])
      );
      assert.deepEqual(first, [true, true]);
      const second = await store.transaction((tx) =>
        recordNotifications(tx, [
          notification("o1", "order_confirmed"),
          notification("o1", "order_rejected"),
          notification("o2", "order_confirmed"),
          notification("o2", "order_cancelled"),
          notification("o1", "order_cancelled"),
        ])
      );
      assert.deepEqual(second, [false, false, false, false, true]);
    });
  });
}

/** Rows of `table` that sequential scans read so far in `tx`'s transaction, on PostgreSQL. */
async function rowsReadByScans(tx: Tx, table: string): Promise<number> {
  const row = await tx.get<{ read: number }>(
    "SELECT CAST(pg_stat_get_xact_tuples_returned(CAST(? AS regclass)) AS INTEGER) AS read",
    table,
  );
  return row!.read;
}

const postgres = (await storeKinds()).find((kind) => kind.name === "postgres");
if (postgres) {
  Deno.test("recordNotifications() reads only its orders' notifications after its statement's plan was cached on a small table (postgres)", async () => {
    await postgres.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await store.transaction(async (tx) => {
        const batch = (round: number) =>
          ["a", "b", "c"].map((id) => notification(`${id}${round}`, "order_confirmed"));
        // PostgreSQL plans a prepared statement afresh five times, then may keep a generic plan.
        for (let round = 0; round < 8; round++) await recordNotifications(tx, batch(round));
        await tx.run(
          `INSERT INTO notifications (order_id, user_id, kind, message, created_at)
           SELECT 'x' || i, 'u1', 'order_confirmed', '', '' FROM generate_series(1, 5000) AS i`,
        );
        const before = await rowsReadByScans(tx, "notifications");
        assert.deepEqual(await recordNotifications(tx, batch(8)), [true, true, true]);
        assert.equal(await rowsReadByScans(tx, "notifications") - before, 0);
      });
    });
  });
}
