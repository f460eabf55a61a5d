import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import { inventoryOutcome, orderCancelledSchema, parseEvent } from "../shared/events.ts";
import { claimOutbox } from "../shared/outbox.ts";
import { createLogger } from "../shared/log.ts";
import { changeStatus, getOrder, insertOrder, ORDER_MIGRATIONS } from "./orders.ts";
import { renderMetrics } from "../shared/metrics.ts";
import { placeOrder } from "./place_order.ts";
import { expireOverdueOrders, watchPendingOrders } from "./expire_orders.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";

const TIMEOUT_MS = 120_000;
const LATER = () => Date.now() + TIMEOUT_MS + 1000;
const handleOutcome = handleInventoryOutcome(createLogger("order", { level: "error" }));

async function place(store: Store, userId = "u1"): Promise<string> {
  const result = await placeOrder(store, { user_id: userId, items: [{ sku: "burger", qty: 1 }] });
  assert.equal(result.kind, "created");
  return result.kind === "created" ? result.order.order_id : "";
}

/** Places `count` orders one after another; returns their ids. */
async function placeMany(store: Store, count: number): Promise<string[]> {
  const ids = [];
  for (let i = 0; i < count; i++) ids.push(await place(store));
  return ids;
}

async function statusOf(store: Store, orderId: string): Promise<string | undefined> {
  return (await store.read((tx) => getOrder(tx, orderId)))?.status;
}

/** The OrderCancelled events in the outbox, by order id. */
async function cancellations(store: Store): Promise<Map<string, unknown[]>> {
  const byOrder = new Map<string, unknown[]>();
  for (const row of await store.read((tx) => claimOutbox(tx, 10_000))) {
    if (row.event_type !== "OrderCancelled") continue;
    const parsed = parseEvent(new TextEncoder().encode(row.body), orderCancelledSchema);
    assert.ok(parsed.ok, row.body);
    byOrder.set(parsed.event.order_id, [...byOrder.get(parsed.event.order_id) ?? [], parsed.event]);
  }
  return byOrder;
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store, reopen: () => Promise<Store>) => Promise<void>) =>
    kind.with("order", ORDER_MIGRATIONS, (store, reopen) => fn(store, () => reopen()));
  /** Runs `fn` with two instances on one database and `count` orders that are overdue at `now`. */
  const withOverdueOrders = (
    count: number,
    fn: (setup: { store: Store; other: Store; ids: string[]; now: number }) => Promise<void>,
  ) =>
    withStore(async (store, reopen) => {
      const other = await reopen();
      const ids = await placeMany(store, count);
      await fn({ store, other, ids, now: LATER() });
    });

  Deno.test(`expireOverdueOrders() expires only PENDING orders older than the timeout, each with an OrderCancelled (${kind.name})`, async () => {
    await withStore(async (store) => {
      const overdue = await place(store);
      const confirmed = await place(store);
      await store.transaction((tx) =>
        changeStatus(tx, confirmed, { from: "PENDING", to: "CONFIRMED" })
      );
      assert.deepEqual(await expireOverdueOrders(store, TIMEOUT_MS), [], "nothing is due yet");
      const expired = await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER() });
      assert.deepEqual(expired.map((order) => order.order_id), [overdue]);
      assert.equal(await statusOf(store, overdue), "EXPIRED");
      assert.equal(await statusOf(store, confirmed), "CONFIRMED");
      const order = await store.read((tx) => getOrder(tx, overdue));
      assert.equal(order?.reason, "no inventory outcome within 120 s");
      const events = await cancellations(store);
      assert.deepEqual([...events.keys()], [overdue]);
      assert.deepEqual(
        events.get(overdue)?.map((e) => {
          const { reason, previous_status, user_id, items } = e as Record<string, unknown>;
          return { reason, previous_status, user_id, items };
        }),
        [{
          reason: "expired",
          previous_status: "PENDING",
          user_id: "u1",
          items: [{ sku: "burger", qty: 1 }],
        }],
      );
      assert.deepEqual(await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER() }), []);
    });
  });

  Deno.test(`expireOverdueOrders() expires in batches until none is left (${kind.name})`, async () => {
    await withStore(async (store) => {
      const ids = await placeMany(store, 7);
      const expired = await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER(), batchSize: 3 });
      assert.deepEqual(expired.map((order) => order.order_id).sort(), ids.sort());
      assert.equal((await cancellations(store)).size, 7);
    });
  });

  Deno.test(`expireOverdueOrders() after a restart expires what became due meanwhile (${kind.name})`, async () => {
    await withStore(async (store, reopen) => {
      const orderId = await place(store);
      await store.close();
      const restarted = await reopen();
      const expired = await expireOverdueOrders(restarted, TIMEOUT_MS, { now: LATER() });
      assert.deepEqual(expired.map((order) => order.order_id), [orderId]);
      assert.equal(await statusOf(restarted, orderId), "EXPIRED");
    });
  });

  Deno.test(`expireOverdueOrders() of two instances at once expires each order once (${kind.name})`, async () => {
    await withOverdueOrders(150, async ({ store, other, ids, now }) => {
      const sweeps = await Promise.all(
        [store, other, store, other].map((s) =>
          expireOverdueOrders(s, TIMEOUT_MS, { now, batchSize: 10 })
        ),
      );
      const expired = sweeps.flat().map((order) => order.order_id);
      assert.equal(expired.length, 150);
      assert.deepEqual(expired.sort(), ids.sort());
      const events = await cancellations(store);
      assert.equal(events.size, 150);
      assert.ok([...events.values()].every((list) => list.length === 1));
    });
  });

  Deno.test(`handleInventoryOutcome() leaves an EXPIRED order EXPIRED (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER() });
      const late = inventoryOutcome({ order_id: orderId, user_id: "u1", items: [] });
      await store.transaction((tx) => handleEvents(handleOutcome, tx, [late]));
      assert.equal(await statusOf(store, orderId), "EXPIRED");
    });
  });

  Deno.test(`handleInventoryOutcome() leaves a PENDING order to the sweep on 'order expired' (${kind.name})`, async () => {
    await withStore(async (store) => {
      const orderId = await place(store);
      const refused = inventoryOutcome(
        { order_id: orderId, user_id: "u1", items: [] },
        "order expired",
      );
      await store.transaction((tx) => handleEvents(handleOutcome, tx, [refused]));
      assert.equal(await statusOf(store, orderId), "PENDING");
      await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER() });
      assert.equal(await statusOf(store, orderId), "EXPIRED");
    });
  });

  Deno.test(`expireOverdueOrders() racing an outcome either expires or confirms each order (${kind.name})`, async () => {
    await withOverdueOrders(40, async ({ store, other, ids, now }) => {
      await Promise.all([
        expireOverdueOrders(other, TIMEOUT_MS, { now, batchSize: 5 }),
        ...ids.map((id) =>
          store.transaction((tx) =>
            handleEvents(handleOutcome, tx, [
              inventoryOutcome({ order_id: id, user_id: "u1", items: [] }),
            ])
          )
        ),
      ]);
      const events = await cancellations(store);
      for (const id of ids) {
        const status = await statusOf(store, id);
        assert.ok(status === "CONFIRMED" || status === "EXPIRED", `${id}: ${status}`);
        assert.equal(events.has(id), status === "EXPIRED", `${id}: ${status}`);
      }
    });
  });

  Deno.test(`expireOverdueOrders() publishes an order's OrderCancelled in the trace of the request that placed it (${kind.name})`, async () => {
    await withStore(async (store) => {
      const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
      const placed = await placeOrder(
        store,
        { user_id: "u1", items: [{ sku: "burger", qty: 1 }] },
        {
          traceparent,
        },
      );
      assert.equal(placed.kind, "created");
      await expireOverdueOrders(store, TIMEOUT_MS, { now: LATER() });
      const rows = await store.read((tx) => claimOutbox(tx, 10_000));
      assert.deepEqual(
        rows.map((row) => [row.event_type, JSON.parse(row.headers).traceparent]),
        [["OrderPlaced", traceparent], ["OrderCancelled", traceparent]],
      );
    });
  });
}

Deno.test("watchPendingOrders() reports the PENDING orders and the oldest one's age at each scrape", async () => {
  const [sqlite] = await storeKinds();
  await sqlite.with("order", ORDER_MIGRATIONS, async (store) => {
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    const items = [{ sku: "burger", qty: 1 }];
    await store.transaction(async (tx) => {
      await insertOrder(tx, { order_id: "old", user_id: "u1", items, created_at: minuteAgo });
      await insertOrder(tx, { order_id: "decided", user_id: "u1", items, created_at: minuteAgo });
      await changeStatus(tx, "decided", { from: "PENDING", to: "CONFIRMED" });
    });
    await place(store);
    watchPendingOrders(store);
    const lines = (await renderMetrics()).split("\n");
    assert.ok(lines.includes("campus_food_orders_pending 2"), lines.join("\n"));
    const age = Number(
      lines.find((line) => line.startsWith("campus_food_orders_oldest_pending_age_seconds "))
        ?.split(" ")[1],
    );
    assert.ok(age >= 60 && age < 120, `age ${age}`);
  });
});
