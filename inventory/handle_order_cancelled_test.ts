import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import {
  CancelReason,
  type Event,
  orderCancelled,
  type OrderItem,
  orderPlaced,
} from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { EventType } from "../shared/topology.ts";
import { getReservation, INVENTORY_MIGRATIONS, listStock, seedStock } from "./stock.ts";
import { handleOrderPlaced } from "./handle_order_placed.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";

const log = createLogger("inventory", { level: "error" });
const placeHandler = handleOrderPlaced({ log });
const cancelHandler = handleOrderCancelled(log);

function order(orderId: string, items: OrderItem[]) {
  return { order_id: orderId, user_id: "u1", items, created_at: new Date().toISOString() };
}

/** Handles an OrderPlaced of `orderId` as the consumer does: a batch of one, one transaction. */
function place(store: Store, orderId: string, items: OrderItem[]): Promise<Event[]> {
  const published: Event[] = [];
  return store.transaction(async (tx) => {
    published.length = 0;
    await handleEvents(placeHandler, tx, [orderPlaced(order(orderId, items))], published);
    return [...published];
  });
}

/**
 * Handles the OrderCancelled of `orderId` as the consumer does. An event without `items` (they are
 * optional on the wire) locks no stock first, so nothing serializes it with a reservation.
 */
function cancel(store: Store, orderId: string, items: OrderItem[] | undefined): Promise<void> {
  return store.transaction(async (tx) => {
    const event = orderCancelled(order(orderId, items ?? []), {
      reason: CancelReason.expired,
      previousStatus: "PENDING",
    });
    if (!items) delete event.items;
    await handleEvents(cancelHandler, tx, [event]);
  });
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    kind.with("inventory", INVENTORY_MIGRATIONS, (store, reopen) => fn(store, () => reopen()));

  Deno.test(`handleOrderCancelled() releases a reservation and its stock (${kind.name})`, async () => {
    await withStore(async (store) => {
      await seedStock(store, { burger: 3 });
      const items = [{ sku: "burger", qty: 2 }];
      const [outcome] = await place(store, "o1", items);
      assert.equal(outcome.event_type, EventType.InventoryReserved);
      assert.deepEqual(await store.read(listStock), { burger: 1 });
      await cancel(store, "o1", items);
      assert.deepEqual(await store.read(listStock), { burger: 3 });
      assert.equal((await store.read((tx) => getReservation(tx, "o1")))?.status, "RELEASED");
      // A second OrderCancelled of the order (a copy past the inbox's window) gives nothing again.
      await cancel(store, "o1", items);
      assert.deepEqual(await store.read(listStock), { burger: 3 });
    });
  });

  Deno.test(`handleOrderPlaced() after handleOrderCancelled() fails with 'order cancelled' and takes nothing (${kind.name})`, async () => {
    await withStore(async (store) => {
      await seedStock(store, { burger: 3 });
      const items = [{ sku: "burger", qty: 1 }];
      await cancel(store, "o1", items);
      const published = await place(store, "o1", items);
      assert.equal(published.length, 1);
      assert.equal(published[0].event_type, EventType.InventoryFailed);
      assert.equal("reason" in published[0] && published[0].reason, "order cancelled");
      assert.deepEqual(await store.read(listStock), { burger: 3 });
      // A replayed OrderPlaced (another event for the same order) has no effect at all.
      assert.deepEqual(await place(store, "o1", items), []);
      assert.deepEqual(await store.read(listStock), { burger: 3 });
      assert.equal((await store.read((tx) => getReservation(tx, "o1")))?.status, "FAILED");
    });
  });

  Deno.test(`handleOrderPlaced() racing handleOrderCancelled() never keeps stock for a cancelled order (${kind.name})`, async () => {
    await withStore(async (store, reopen) => {
      // Two instances of inventory on PostgreSQL; on SQLite the second is the same file.
      const other = await reopen();
      await seedStock(store, { burger: 1000, fries: 1000 });
      const items = [{ sku: "burger", qty: 1 }, { sku: "fries", qty: 2 }];
      const ids = Array.from({ length: 60 }, (_, i) => `race-${i}`);
      const outcomes = await Promise.all(ids.map(async (id, i) => {
        const [placed] = await Promise.all(
          i % 2
            ? [place(store, id, items), cancel(other, id, i % 3 ? undefined : items)]
            : [place(other, id, items), cancel(store, id, i % 3 ? undefined : items)],
        );
        return placed;
      }));
      assert.ok(outcomes.every((published) => published.length === 1), "one outcome per order");
      assert.deepEqual(await store.read(listStock), { burger: 1000, fries: 1000 });
      const statuses = await store.read((tx) =>
        Promise.all(ids.map(async (id) => (await getReservation(tx, id))?.status))
      );
      assert.ok(statuses.every((status) => status === "RELEASED" || status === "FAILED"));
    });
  });

  Deno.test(`INVENTORY_MIGRATIONS keep an existing reservation placed and releasable (${kind.name})`, async () => {
    await kind.with(
      "inventory",
      INVENTORY_MIGRATIONS.slice(0, -1),
      async (old, reopen) => {
        await seedStock(old, { burger: 5 });
        await old.transaction((tx) =>
          tx.run(
            `INSERT INTO reservations (order_id, status, items, created_at)
             VALUES ('o1', 'RESERVED', '[{"sku":"burger","qty":2}]', '2026-01-01T00:00:00.000Z')`,
          )
        );
        await old.transaction((tx) => tx.run("UPDATE stock SET qty = 3 WHERE sku = 'burger'"));
        await old.close();
        const store = await reopen(INVENTORY_MIGRATIONS);
        assert.deepEqual(await place(store, "o1", [{ sku: "burger", qty: 2 }]), []);
        await cancel(store, "o1", [{ sku: "burger", qty: 2 }]);
        assert.deepEqual(await store.read(listStock), { burger: 5 });
      },
    );
  });
}
