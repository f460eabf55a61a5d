/**
 * Exactly-once effects under at-least-once delivery, against the real broker: the same event
 * delivered again, two events for one order, and a restart on the same data.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { publishOrderPlaced } from "../lib/broker_probes.ts";
import {
  getStock,
  notificationCount,
  notificationsOf,
  orderStatus,
  placeOrder,
  waitDecided,
  waitReady,
} from "../lib/http_probes.ts";
import { SERVICES } from "../lib/service_process.ts";
import { stackTest } from "../lib/stack.ts";
import { orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { EventType } from "../../shared/topology.ts";

const OUTCOMES = [EventType.InventoryReserved, EventType.InventoryFailed];

stackTest(
  "the same OrderPlaced published three times has one effect of each kind, against the broker",
  {},
  async (stack) => {
    const tap = await stack.tools.tap(OUTCOMES);
    const before = await getStock(stack);
    const event = orderPlaced({
      order_id: newId(),
      user_id: "u1",
      items: [{ sku: "pizza", qty: 2 }],
      created_at: new Date().toISOString(),
    });
    for (let i = 0; i < 3; i++) await publishOrderPlaced(stack, event);
    const sent = await waitFor(
      "the notification",
      async () => (await notificationsOf(stack, event.order.order_id)).at(0),
    );
    assert.equal(sent.kind, "order_confirmed");
    await waitFor(
      "inventory to see all three copies",
      () =>
        stack.services.inventory!.logs.filter((l) => l.event_id === event.event_id).length === 3,
    );
    assert.equal((await getStock(stack)).pizza, before.pizza - 2);
    assert.equal(tap.messages.length, 1);
    assert.equal(await notificationCount(stack, event.order.order_id), 1);
    assert.equal(
      stack.services.inventory!.logs.filter((l) => l.msg === "skipped duplicate").length,
      2,
    );
  },
);

stackTest(
  "two events for one order have one effect of each kind, against the broker",
  {},
  async (stack) => {
    const tap = await stack.tools.tap(OUTCOMES);
    const before = await getStock(stack);
    const order = {
      order_id: newId(),
      user_id: "u1",
      items: [{ sku: "salad", qty: 1 }],
      created_at: new Date().toISOString(),
    };
    const first = orderPlaced(order);
    const second = orderPlaced(order);
    await publishOrderPlaced(stack, first);
    await publishOrderPlaced(stack, second);
    await waitFor(
      "inventory to handle both events",
      () =>
        stack.services.inventory!.logs.some((l) => l.event_id === second.event_id) &&
        stack.services.inventory!.logs.some((l) => l.event_id === first.event_id),
    );
    await waitFor(
      "the notification",
      async () => await notificationCount(stack, order.order_id) === 1,
    );
    assert.equal((await getStock(stack)).salad, before.salad - 1);
    assert.equal(tap.messages.length, 1);
  },
);

stackTest("a restart with the same data directory changes nothing, against the broker", {
  serviceEnv: { inventory: { INVENTORY_STOCK: "burger=5" } },
}, async (stack) => {
  const tap = await stack.tools.tap(OUTCOMES);
  const orderIds: string[] = [];
  for (let i = 0; i < 3; i++) {
    orderIds.push(
      await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] }),
    );
  }
  for (const id of orderIds) await waitDecided(stack, id);
  await waitFor(
    "3 notifications",
    async () =>
      (await Promise.all(orderIds.map((id) => notificationCount(stack, id)))).join() ===
        "1,1,1",
  );
  const before = { stock: await getStock(stack), outcomes: tap.messages.length };
  assert.deepEqual(before, { stock: { burger: 2 }, outcomes: 3 });

  for (const name of SERVICES) assert.equal(await stack.stop(name), 0);
  for (const name of SERVICES) await stack.start(name);
  await waitReady(stack);

  assert.deepEqual(await getStock(stack), { burger: 2 }, "stock is not seeded again");
  for (const id of orderIds) {
    assert.equal(await orderStatus(stack, id), "CONFIRMED");
    assert.equal(await notificationCount(stack, id), 1);
  }
  // A new order still flows, and is the only new outcome.
  const next = await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] });
  assert.equal(await waitDecided(stack, next), "CONFIRMED");
  await waitFor("the 4th outcome", () => tap.messages.length === 4);
});
