import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import { inventoryOutcome, orderCancelledSchema, parseEvent } from "../shared/events.ts";
import { claimOutbox } from "../shared/outbox.ts";
import { createLogger } from "../shared/log.ts";
import { changeStatus, getOrder, ORDER_MIGRATIONS, type OrderStatus } from "./orders.ts";
import { placeOrder } from "./place_order.ts";
import { cancelOrder } from "./cancel_order.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";

const handleOutcome = handleInventoryOutcome(createLogger("order", { level: "error" }));

async function place(store: Store): Promise<string> {
  const result = await placeOrder(store, { user_id: "u1", items: [{ sku: "fries", qty: 2 }] });
  return result.kind === "created" ? result.order.order_id : assert.fail(result.kind);
}

/** The `previous_status` of each OrderCancelled in the outbox for `orderId`. */
async function cancelledFrom(store: Store, orderId: string): Promise<Array<string | undefined>> {
  const rows = await store.read((tx) => claimOutbox(tx, 1000));
  return rows.filter((row) => row.event_type === "OrderCancelled").flatMap((row) => {
    const parsed = parseEvent(new TextEncoder().encode(row.body), orderCancelledSchema);
    assert.ok(parsed.ok, row.body);
    assert.equal(parsed.event.reason, "cancelled");
    return parsed.event.order_id === orderId ? [parsed.event.previous_status] : [];
  });
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    kind.with("order", ORDER_MIGRATIONS, (store, reopen) => fn(store, () => reopen()));

  for (const from of ["PENDING", "CONFIRMED"] as const) {
    Deno.test(`cancelOrder() cancels a ${from} order with one OrderCancelled (${kind.name})`, async () => {
      await withStore(async (store) => {
        const orderId = await place(store);
        if (from === "CONFIRMED") {
          await store.transaction((tx) => changeStatus(tx, orderId, { from: "PENDING", to: from }));
        }
        const result = await cancelOrder(store, orderId);
        assert.equal(result.kind, "cancelled");
        assert.equal(result.kind === "cancelled" && result.from, from);
        assert.equal((await store.read((tx) => getOrder(tx, orderId)))?.status, "CANCELLED");
        assert.deepEqual(await cancelledFrom(store, orderId), [from]);
        const again = await cancelOrder(store, orderId);
        assert.equal(again.kind, "unchanged");
        assert.deepEqual(await cancelledFrom(store, orderId), [from], "no second event");
      });
    });
  }

  for (const status of ["REJECTED", "EXPIRED"] as const) {
    Deno.test(`cancelOrder() refuses a ${status} order and changes nothing (${kind.name})`, async () => {
      await withStore(async (store) => {
        const orderId = await place(store);
        await store.transaction((tx) => changeStatus(tx, orderId, { from: "PENDING", to: status }));
        const result = await cancelOrder(store, orderId);
        assert.equal(result.kind, "conflict");
        assert.equal(result.kind === "conflict" && result.order.status, status);
        assert.equal((await store.read((tx) => getOrder(tx, orderId)))?.status, status);
        assert.deepEqual(await cancelledFrom(store, orderId), []);
      });
    });
  }

  Deno.test(`cancelOrder() of an unknown order finds nothing (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.deepEqual(await cancelOrder(store, "01J0000000000000000000NOPE"), {
        kind: "not_found",
      });
    });
  });

  Deno.test(`handleInventoryOutcome() leaves a CANCELLED order CANCELLED (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      await cancelOrder(store, orderId);
      for (const reason of [undefined, "not enough stock"]) {
        const late = inventoryOutcome({ order_id: orderId, user_id: "u1", items: [] }, reason);
        await store.transaction((tx) => handleEvents(handleOutcome, tx, [late]));
      }
      assert.equal((await store.read((tx) => getOrder(tx, orderId)))?.status, "CANCELLED");
    });
  });

  Deno.test(`cancelOrder() racing an outcome says in its event whether the order was confirmed (${kind.name})`, async () => {
    await withStore(async (store, reopen) => {
      const other = await reopen();
      const ids = [];
      for (let i = 0; i < 30; i++) ids.push(await place(store));
      await Promise.all(ids.flatMap((id) => [
        cancelOrder(other, id),
        store.transaction((tx) =>
          handleEvents(handleOutcome, tx, [
            inventoryOutcome({ order_id: id, user_id: "u1", items: [] }),
          ])
        ),
      ]));
      for (const id of ids) {
        const order = await store.read((tx) => getOrder(tx, id));
        assert.equal(order?.status, "CANCELLED");
        const [from] = await cancelledFrom(store, id);
        assert.ok(from === "PENDING" || from === "CONFIRMED", String(from));
      }
    });
  });

  Deno.test(`ORDER_MIGRATIONS keep existing orders and let them expire (${kind.name})`, async () => {
    await kind.with("order", ORDER_MIGRATIONS.slice(0, -1), async (old, reopen) => {
      // As an earlier version wrote it, without the columns of the migrations after.
      const orderId = "placed-by-an-earlier-version";
      const now = new Date().toISOString();
      await old.transaction((tx) =>
        tx.run(
          `INSERT INTO orders (order_id, user_id, items, status, created_at, updated_at)
           VALUES (?, 'u1', ?, 'PENDING', ?, ?)`,
          orderId,
          JSON.stringify([{ sku: "fries", qty: 2 }]),
          now,
          now,
        )
      );
      await old.close();
      const store = await reopen(ORDER_MIGRATIONS);
      const order = await store.read((tx) => getOrder(tx, orderId));
      assert.equal(order?.status satisfies OrderStatus | undefined, "PENDING");
      assert.deepEqual(order?.items, [{ sku: "fries", qty: 2 }]);
      const expired = await store.transaction((tx) =>
        changeStatus(tx, orderId, { from: "PENDING", to: "EXPIRED" })
      );
      assert.equal(expired?.order_id, orderId);
    });
  });
}
