/**
 * An order through the whole system against the real broker, each test on a stack of its own
 * (vhost, data directory, ports) of the three real services: confirmed, rejected, the last items
 * raced for, and bad input refused.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { waitForDepth } from "../lib/broker_probes.ts";
import {
  getJson,
  getStock,
  notificationsOf,
  placeOrder,
  postOrder,
  reservationOf,
  waitDecided,
} from "../lib/http_probes.ts";
import { stackTest } from "../lib/stack.ts";
import { EventType, Queue } from "../../shared/topology.ts";

const OUTCOMES = [EventType.InventoryReserved, EventType.InventoryFailed];

stackTest(
  "the order of the README's curl ends CONFIRMED with one reservation, one stock change and one notification, against the broker",
  {},
  async (stack) => {
    const tap = await stack.tools.tap(OUTCOMES);
    const before = await getStock(stack);
    const response = await postOrder(stack.url("order"), {
      user_id: "u1",
      items: [{ sku: "burger", qty: 1 }],
    });
    assert.equal(response.status, 202);
    const { order_id, status } = await response.json();
    assert.equal(status, "PENDING");
    assert.equal(response.headers.get("location"), `/orders/${order_id}`);

    assert.equal(await waitDecided(stack, order_id), "CONFIRMED");
    const reservation = await reservationOf(stack, order_id);
    assert.equal(reservation?.status, "RESERVED");
    assert.deepEqual(reservation?.items, [{ sku: "burger", qty: 1 }]);
    assert.equal((await getStock(stack)).burger, before.burger - 1);
    const sent = await waitFor(
      "the notification",
      async () =>
        (await notificationsOf(stack, order_id)).length > 0 && notificationsOf(stack, order_id),
    );
    assert.equal(sent.length, 1);
    assert.equal(sent[0].kind, "order_confirmed");
    assert.equal(sent[0].message, `order ${order_id} for u1 confirmed: 1× burger`);
    assert.ok(stack.services.notification!.logs.some((line) => line.msg === sent[0].message));
    await waitFor("the outcome event on the tap", () => tap.messages.length === 1);
    const [outcome] = tap.messages;
    assert.equal(outcome.type, EventType.InventoryReserved);
    assert.equal(outcome.correlationId, order_id);
    assert.equal(outcome.contentType, "application/json");
    assert.equal(outcome.persistent, true);
    assert.equal(outcome.messageId, JSON.parse(new TextDecoder().decode(outcome.body)).event_id);
  },
);

stackTest(
  "INVENTORY_FAIL=true rejects every order with reason 'simulated failure', against the broker",
  { serviceEnv: { inventory: { INVENTORY_FAIL: "true" } } },
  async (stack) => {
    const before = await getStock(stack);
    const orderId = await placeOrder(stack, {
      user_id: "u1",
      items: [{ sku: "burger", qty: 1 }],
    });
    assert.equal(await waitDecided(stack, orderId), "REJECTED");
    const order = await getJson(`${stack.url("order")}/orders/${orderId}`);
    assert.equal(order.body.reason, "simulated failure");
    const reservation = await reservationOf(stack, orderId);
    assert.deepEqual([reservation?.status, reservation?.reason], [
      "FAILED",
      "simulated failure",
    ]);
    assert.deepEqual(await getStock(stack), before);
    const sent = await waitFor(
      "the notification",
      async () => (await notificationsOf(stack, orderId)).at(0),
    );
    assert.equal(sent.kind, "order_rejected");
  },
);

stackTest(
  "concurrent orders for the last items confirm exactly as many as there are, against the broker",
  { serviceEnv: { inventory: { INVENTORY_STOCK: "burger=3,fries=100" } } },
  async (stack) => {
    const orderIds = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        placeOrder(stack, {
          user_id: `u${i}`,
          items: [{ sku: "fries", qty: 1 }, { sku: "burger", qty: 1 }],
        })),
    );
    const statuses = await Promise.all(orderIds.map((id) => waitDecided(stack, id)));
    assert.equal(
      statuses.filter((s) => s === "CONFIRMED").length,
      3,
    );
    assert.equal(statuses.filter((s) => s === "REJECTED").length, 9);
    // All or nothing: the rejected orders took no fries either.
    assert.deepEqual(await getStock(stack), { burger: 0, fries: 97 });
  },
);

stackTest(
  "every bad HTTP input gets its status and stores or publishes nothing, against the broker",
  { services: ["order"] },
  async (stack) => {
    const cases: Array<[string, string, number, string?]> = [
      ["invalid JSON", "{", 400],
      ["missing items", '{"user_id":"u1"}', 400],
      ["qty too big", '{"user_id":"u1","items":[{"sku":"burger","qty":101}]}', 400],
      ["unknown field", '{"user_id":"u1","items":[{"sku":"burger","qty":1}],"x":1}', 400],
      ["not JSON", "user_id=u1", 415, "application/x-www-form-urlencoded"],
      [
        "too large",
        JSON.stringify({ user_id: "u1", items: [{ sku: "x".repeat(70_000), qty: 1 }] }),
        413,
      ],
    ];
    for (const [name, body, expected, contentType = "application/json"] of cases) {
      const response = await postOrder(stack.url("order"), body, { "content-type": contentType });
      assert.equal(response.status, expected, name);
      assert.ok(typeof (await response.json()).error === "string", name);
    }
    const invalid = await (await postOrder(stack.url("order"), {
      user_id: "u1",
      items: [{ sku: "burger", qty: 0 }],
    }))
      .json();
    assert.equal(invalid.issues[0].field, "items[0].qty");
    // A valid order afterwards is the first and only message: nothing was published before it.
    await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] });
    await waitForDepth(stack, Queue.orderPlaced, 1);
  },
);
