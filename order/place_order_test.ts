/**
 * placeOrder() on both stores: idempotency keys scoped to the student (and the migration that made
 * them so), and MAX_UNITS_PER_STUDENT under concurrent orders of one student.
 * @module
 */
import assert from "node:assert/strict";
import { storeKinds } from "../shared/testing/stores.ts";
import type { Store } from "../shared/store.ts";
import { placeOrder, type PlaceResult } from "./place_order.ts";
import {
  changeStatus,
  countOpenUnits,
  idempotencyKeyRetention,
  ORDER_MIGRATIONS,
} from "./orders.ts";
import { deleteExpired } from "../shared/retention.ts";

const BURGER = [{ sku: "burger", qty: 1 }];

async function count(store: Store, table: string): Promise<number> {
  return (await store.read((tx) => tx.get<{ n: number }>(`SELECT count(*) AS n FROM ${table}`)))!
    .n;
}

function orderIdOf(result: PlaceResult): string {
  assert.ok(result.kind === "created" || result.kind === "replayed", result.kind);
  return result.order.order_id;
}

for (const kind of await storeKinds()) {
  Deno.test(`placeOrder() scopes an Idempotency-Key to its student (${kind.name})`, async () => {
    await kind.with("order", ORDER_MIGRATIONS, async (store) => {
      const key = { idempotencyKey: "shared-key" };
      const b = await placeOrder(store, { user_id: "b", items: BURGER }, key);
      assert.equal(b.kind, "created");
      const a = await placeOrder(store, { user_id: "a", items: BURGER }, key);
      assert.equal(a.kind, "created", "another student's use of the key is not a conflict");
      assert.notEqual(orderIdOf(a), orderIdOf(b));
      const again = await placeOrder(store, { user_id: "a", items: BURGER }, key);
      assert.equal(again.kind, "replayed");
      assert.equal(orderIdOf(again), orderIdOf(a));
      const other = await placeOrder(
        store,
        { user_id: "a", items: [{ sku: "soda", qty: 1 }] },
        key,
      );
      assert.equal(other.kind, "conflict");
      assert.equal(await count(store, "orders"), 2);
      assert.equal(await count(store, "idempotency_keys"), 2);
    });
  });

  Deno.test(`ORDER_MIGRATIONS give the keys of an existing database to the students of their orders (${kind.name})`, async () => {
    const before = ORDER_MIGRATIONS.findIndex((m) => m.name === "idempotency_keys_per_student");
    assert.ok(before > 0);
    await kind.with("order", ORDER_MIGRATIONS.slice(0, before), async (old, reopen) => {
      // The table as the previous release wrote it: one key for everyone.
      await old.transaction(async (tx) => {
        await tx.run(
          `INSERT INTO orders (order_id, user_id, items, status, created_at, updated_at)
           VALUES ('o1', 'a', ?, 'PENDING', '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z')`,
          JSON.stringify(BURGER),
        );
        await tx.run(
          `INSERT INTO idempotency_keys (idempotency_key, request_hash, order_id, created_at)
           VALUES ('k1', 'hash-of-a', 'o1', '2024-01-01T00:00:00.000Z')`,
        );
      });
      const store = await reopen(ORDER_MIGRATIONS);
      const rows = await store.read((tx) =>
        tx.all("SELECT user_id, idempotency_key, order_id FROM idempotency_keys")
      );
      assert.deepEqual(rows.map((row) => ({ ...row as object })), [
        { user_id: "a", idempotency_key: "k1", order_id: "o1" },
      ]);
      const b = await placeOrder(store, { user_id: "b", items: BURGER }, { idempotencyKey: "k1" });
      assert.equal(b.kind, "created");
      const a = await placeOrder(store, { user_id: "a", items: BURGER }, { idempotencyKey: "k1" });
      assert.equal(a.kind, "conflict", "a's old key still guards a's requests");
    });
  });

  Deno.test(`idempotencyKeyRetention() deletes the per-student keys older than its window (${kind.name})`, async () => {
    await kind.with("order", ORDER_MIGRATIONS, async (store) => {
      for (const user_id of ["a", "b"]) {
        await placeOrder(store, { user_id, items: BURGER }, { idempotencyKey: "k" });
      }
      const rule = idempotencyKeyRetention(60_000);
      assert.equal(await deleteExpired(store, rule), 0);
      assert.equal(await deleteExpired(store, rule, { now: Date.now() + 120_000 }), 2);
      assert.equal(await count(store, "idempotency_keys"), 0);
    });
  });

  Deno.test(`placeOrder() with maxUnitsPerStudent holds concurrent orders of one student to the cap (${kind.name})`, async () => {
    await kind.with("order", ORDER_MIGRATIONS, async (store) => {
      const options = { maxUnitsPerStudent: 5 };
      // Every connection of the pool open first, so that the orders below do run side by side.
      if (store.dialect === "postgres") {
        await Promise.all(
          Array.from({ length: 10 }, () => store.read((tx) => tx.get("SELECT pg_sleep(0.05)"))),
        );
      }
      const results = await Promise.all(
        Array.from(
          { length: 30 },
          () => placeOrder(store, { user_id: "hungry", items: BURGER }, options),
        ),
      );
      const kinds = results.map((r) => r.kind);
      assert.equal(kinds.filter((k) => k === "created").length, 5, kinds.join(","));
      assert.equal(kinds.filter((k) => k === "over_unit_limit").length, 25, kinds.join(","));
      assert.equal(await store.read((tx) => countOpenUnits(tx, "hungry")), 5);
      assert.equal(await count(store, "orders"), 5);
      assert.equal(await count(store, "outbox"), 5, "nothing published for a refused order");
      const refused = results.find((r) => r.kind === "over_unit_limit");
      assert.deepEqual(refused, { kind: "over_unit_limit", limit: 5, held: 5, requested: 1 });
      // Another student has a cap of their own.
      assert.equal(
        (await placeOrder(store, { user_id: "other", items: BURGER }, options)).kind,
        "created",
      );
    });
  });

  Deno.test(`placeOrder() with maxUnitsPerStudent counts PENDING and CONFIRMED orders only, and keeps nothing of a refused one (${kind.name})`, async () => {
    await kind.with("order", ORDER_MIGRATIONS, async (store) => {
      const options = { maxUnitsPerStudent: 10 };
      const place = (qty: number, idempotencyKey?: string) =>
        placeOrder(store, { user_id: "s", items: [{ sku: "burger", qty }] }, {
          ...options,
          idempotencyKey,
        });
      const confirmed = orderIdOf(await place(4));
      await store.transaction((tx) =>
        changeStatus(tx, confirmed, { from: "PENDING", to: "CONFIRMED" })
      );
      const rejected = orderIdOf(await place(3));
      await store.transaction((tx) =>
        changeStatus(tx, rejected, { from: "PENDING", to: "REJECTED", reason: "out of stock" })
      );
      orderIdOf(await place(3));
      assert.equal(await store.read((tx) => countOpenUnits(tx, "s")), 7);
      assert.deepEqual(await place(4, "over"), {
        kind: "over_unit_limit",
        limit: 10,
        held: 7,
        requested: 4,
      });
      assert.equal(
        await count(store, "idempotency_keys"),
        0,
        "the refused order's key is not kept",
      );
      assert.equal((await place(3, "fits")).kind, "created");
      // A retry of an accepted order is its answer again, not a refusal for the units it holds.
      assert.equal((await place(3, "fits")).kind, "replayed");
      // A single order larger than the cap is refused too.
      assert.equal(
        (await placeOrder(store, { user_id: "t", items: [{ sku: "burger", qty: 11 }] }, options))
          .kind,
        "over_unit_limit",
      );
    });
  });
}
