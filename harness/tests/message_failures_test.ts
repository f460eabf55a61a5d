/**
 * What happens to a message that cannot be handled, against the real broker: poison is parked at
 * once, a failing handler is retried with growing delays and then parked, and a message that
 * crashes its consumer every time is parked at the delivery limit.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { peekQueue, publishOrderPlaced, waitForDepth } from "../lib/broker_probes.ts";
import {
  getStock,
  notificationCount,
  placeOrder,
  statusOf,
  waitDecided,
} from "../lib/http_probes.ts";
import { stackTest } from "../lib/stack.ts";
import { inventoryOutcome } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { deadLetterQueue, EventType, EXCHANGE, Queue } from "../../shared/topology.ts";

const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

stackTest(
  "poison goes to order-placed.dlq with the reason while valid orders behind it flow, against the broker",
  {},
  async (stack) => {
    await publishOrderPlaced(stack, "not json", "poison-1");
    await publishOrderPlaced(
      stack,
      JSON.stringify({ invalid: "json", no: "order field" }),
      "poison-2",
    );
    const orderId = await placeOrder(stack, { user_id: "u1", items: [{ sku: "soda", qty: 1 }] });
    assert.equal(await waitDecided(stack, orderId), "CONFIRMED");
    await waitForDepth(stack, deadLetterQueue(Queue.orderPlaced), 2);
    const parked = await peekQueue(stack, deadLetterQueue(Queue.orderPlaced));
    assert.deepEqual(
      parked.map((m) => m.payload),
      ["not json", '{"invalid":"json","no":"order field"}'],
    );
    const reasons = parked.map((m) => String(m.properties.headers?.["x-rejected-reason"]));
    assert.match(reasons[0], /^body is not JSON/);
    assert.match(reasons[1], /event_id: .*order: /);
    assert.equal(await stack.tools.queueDepth(Queue.orderPlaced), 0);
    assert.equal(await statusOf(`${stack.url("inventory")}/health`), 200);
  },
);

stackTest(
  "a handler that always fails is retried with each delay, then dead-lettered with the last error, against the broker",
  {
    env: { RETRY_DELAYS: "100ms,200ms" },
    serviceEnv: { notification: { FAULT_TRANSIENT_RATE: "1" } },
  },
  async (stack) => {
    const orderId = await placeOrder(stack, BURGER);
    const dlq = deadLetterQueue(Queue.orderConfirmed);
    await waitForDepth(stack, dlq, 1);
    const [parked] = await peekQueue(stack, dlq);
    const headers = parked.properties.headers ?? {};
    assert.equal(JSON.parse(parked.payload).order_id, orderId);
    assert.equal(headers["x-attempts"], 3);
    assert.match(String(headers["x-last-error"]), /Injected transient fault/);
    assert.match(String(headers["x-rejected-reason"]), /^failed 3 times/);
    const retries = stack.services.notification!.logs.filter((l) =>
      l.msg === "handling failed, retrying later"
    );
    assert.deepEqual(retries.map((l) => [l.attempt, l.delay_ms]), [[1, 100], [2, 200]]);
    assert.equal(await notificationCount(stack, orderId), 0);
  },
);

stackTest(
  "transient faults at a rate of 0.3 still give every order exactly one notification, against the broker",
  {
    env: { RETRY_DELAYS: "50ms,50ms,100ms,100ms,200ms,200ms", FAULT_TRANSIENT_RATE: "0.3" },
    serviceEnv: { order: { FAULT_TRANSIENT_RATE: "0" } },
  },
  async (stack) => {
    const orderIds = await Promise.all(
      Array.from({ length: 20 }, () => placeOrder(stack, BURGER)),
    );
    await waitFor(
      "every order notified",
      async () =>
        (await Promise.all(orderIds.map((id) => notificationCount(stack, id)))).every((n) =>
          n === 1
        ),
      { timeoutMs: 30_000 },
    );
    assert.equal((await getStock(stack)).burger, 500 - 20);
    const retried = [stack.services.inventory!, stack.services.notification!]
      .flatMap((s) => s.logs).filter((l) => l.msg === "handling failed, retrying later");
    assert.ok(retried.length > 0, "some faults were injected and retried");
    for (const queue of [Queue.orderPlaced, Queue.orderConfirmed]) {
      assert.equal(await stack.tools.queueDepth(deadLetterQueue(queue)), 0);
    }
  },
);

stackTest(
  "a message requeued past the delivery limit is dead-lettered, not redelivered forever, against the broker",
  { services: [] },
  async (stack) => {
    let deliveries = 0;
    // Stands in for a consumer that crashes on this message every time: it never acks it.
    const crashing = stack.broker.consume(Queue.inventoryFailed, (batch) => {
      deliveries += batch.length;
      return Promise.resolve(batch.map(() => ({ action: "requeue" as const, error: "crash" })));
    });
    try {
      const event = inventoryOutcome({ order_id: newId(), user_id: "u1", items: [] }, "x");
      await stack.broker.publish([{
        exchange: EXCHANGE,
        routingKey: EventType.InventoryFailed,
        body: JSON.stringify(event),
        messageId: event.event_id,
      }]);
      const dlq = deadLetterQueue(Queue.inventoryFailed);
      await waitForDepth(stack, dlq, 1);
      const [parked] = await peekQueue(stack, dlq);
      const [death] = parked.properties.headers?.["x-death"] as Array<{ reason: string }>;
      assert.equal(death.reason, "delivery_limit");
      assert.equal(deliveries, 11);
    } finally {
      await crashing.stop();
    }
  },
);
