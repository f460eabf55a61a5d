import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import {
  type Event,
  type InventoryOutcome,
  inventoryOutcome,
  ORDER_EXPIRED_REASON,
} from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { EventType } from "../shared/topology.ts";
import { changeStatus, getOrder, ORDER_MIGRATIONS, type OrderStatus } from "./orders.ts";
import { placeOrder } from "./place_order.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";

const decide = handleInventoryOutcome(createLogger("order", { level: "error" }));
const FRIES = { user_id: "u1", items: [{ sku: "fries", qty: 2 }] };

async function place(store: Store): Promise<string> {
  const result = await placeOrder(store, FRIES);
  return result.kind === "created" ? result.order.order_id : assert.fail(result.kind);
}

/** Handles `outcome` in a transaction of its own: the order's status after, and what was published. */
async function handle(
  store: Store,
  outcome: InventoryOutcome,
): Promise<{ status?: OrderStatus; published: Event[] }> {
  const published: Event[] = [];
  await store.transaction((tx) => handleEvents(decide, tx, [outcome], published));
  const order = await store.read((tx) => getOrder(tx, outcome.order_id));
  return { status: order?.status, published };
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("order", ORDER_MIGRATIONS, (store) => fn(store));

  Deno.test(`handleInventoryOutcome() confirms a PENDING order and publishes OrderConfirmed with it (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      const { status, published } = await handle(
        store,
        inventoryOutcome({ order_id: orderId, ...FRIES }),
      );
      assert.equal(status, "CONFIRMED");
      assert.deepEqual(
        published.map((e) => [e.event_type, e.correlation_id, "user_id" in e && e.user_id]),
        [[EventType.OrderConfirmed, orderId, "u1"]],
      );
      assert.deepEqual((published[0] as { items: unknown }).items, FRIES.items);
    });
  });

  Deno.test(`handleInventoryOutcome() rejects a PENDING order and publishes OrderRejected with the reason (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      const { status, published } = await handle(
        store,
        inventoryOutcome({ order_id: orderId, ...FRIES }, "not enough stock"),
      );
      assert.equal(status, "REJECTED");
      assert.deepEqual(
        published.map((e) => [e.event_type, "reason" in e && e.reason]),
        [[EventType.OrderRejected, "not enough stock"]],
      );
    });
  });

  for (const calledOff of ["CANCELLED", "EXPIRED"] as const) {
    Deno.test(`handleInventoryOutcome() of a ${calledOff} order changes nothing and announces nothing (${kind.name})`, async () => {
      await withStore(async (store) => {
        const orderId = await place(store);
        await store.transaction((tx) =>
          changeStatus(tx, orderId, { from: "PENDING", to: calledOff })
        );
        for (const reason of [undefined, "not enough stock"]) {
          const outcome = inventoryOutcome({ order_id: orderId, ...FRIES }, reason);
          assert.deepEqual(await handle(store, outcome), { status: calledOff, published: [] });
        }
      });
    });
  }

  Deno.test(`handleInventoryOutcome() takes inventory's 'order expired' for no decision: the order expires on its own clock (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      const outcome = inventoryOutcome({ order_id: orderId, ...FRIES }, ORDER_EXPIRED_REASON);
      assert.deepEqual(await handle(store, outcome), { status: "PENDING", published: [] });
    });
  });

  Deno.test(`handleInventoryOutcome() announces a decision again for a second outcome that agrees, and nothing for one that does not (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      await handle(store, inventoryOutcome({ order_id: orderId, ...FRIES }));
      const again = await handle(store, inventoryOutcome({ order_id: orderId, ...FRIES }));
      assert.deepEqual(again.published.map((e) => e.event_type), [EventType.OrderConfirmed]);
      const otherwise = await handle(
        store,
        inventoryOutcome({ order_id: orderId, ...FRIES }, "not enough stock"),
      );
      assert.deepEqual(otherwise, { status: "CONFIRMED", published: [] });
    });
  });

  Deno.test(`handleInventoryOutcome() records and announces an order it never took, published to the broker by hand (${kind.name})`, async () => {
    await withStore(async (store) => {
      const byHand = { order_id: "placed-by-hand", ...FRIES };
      const first = await handle(store, inventoryOutcome(byHand, "not enough stock"));
      assert.equal(first.status, "REJECTED");
      assert.deepEqual(first.published.map((e) => e.event_type), [EventType.OrderRejected]);
      const order = await store.read((tx) => getOrder(tx, byHand.order_id));
      assert.deepEqual([order?.user_id, order?.items, order?.reason], [
        "u1",
        FRIES.items,
        "not enough stock",
      ]);
      const late = await handle(store, inventoryOutcome(byHand));
      assert.deepEqual(late, { status: "REJECTED", published: [] }, "decided once");
    });
  });

  Deno.test(`handleInventoryOutcome() decides a batch in the order it came: each order once, the rest as in a batch of its own (${kind.name})`, async () => {
    await withStore(async (store) => {
      const [confirmed, rejected, expiring, cancelled] = [
        await place(store),
        await place(store),
        await place(store),
        await place(store),
      ];
      await store.transaction((tx) =>
        changeStatus(tx, cancelled, { from: "PENDING", to: "CANCELLED" })
      );
      const outcome = (orderId: string, reason?: string) =>
        inventoryOutcome({ order_id: orderId, ...FRIES }, reason);
      const published: Event[] = [];
      await store.transaction((tx) =>
        handleEvents(decide, tx, [
          outcome(confirmed),
          outcome(expiring, ORDER_EXPIRED_REASON),
          outcome(rejected, "not enough stock"),
          outcome(confirmed),
          outcome(rejected),
          outcome(cancelled),
          outcome("placed-by-hand"),
        ], published)
      );
      assert.deepEqual(published.map((e) => [e.event_type, e.correlation_id]), [
        [EventType.OrderConfirmed, confirmed],
        [EventType.OrderRejected, rejected],
        [EventType.OrderConfirmed, confirmed],
        [EventType.OrderConfirmed, "placed-by-hand"],
      ]);
      const statuses = await store.read((tx) =>
        Promise.all(
          [confirmed, rejected, expiring, cancelled, "placed-by-hand"].map(async (id) =>
            (await getOrder(tx, id))?.status
          ),
        )
      );
      assert.deepEqual(statuses, ["CONFIRMED", "REJECTED", "PENDING", "CANCELLED", "CONFIRMED"]);
    });
  });
}
