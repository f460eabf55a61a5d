/**
 * The order lifecycle against the real broker: cancelling over HTTP, the decision timeout, and the
 * compensation in inventory, each on a stack of its own, observed through the services' HTTP APIs.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { waitForDepth } from "../lib/broker_probes.ts";
import {
  cancelOrder,
  getJson,
  getStock,
  notificationKinds,
  orderStatus,
  placeOrder,
  request,
  reservationOf,
  waitForStatus,
  waitReady,
} from "../lib/http_probes.ts";
import { INTEGRATION, stackTest, withStack } from "../lib/stack.ts";
import { replayDeadLetters } from "../ops/dlq.ts";
import { deadLetterQueue, Queue } from "../../shared/topology.ts";

const BURGERS = { user_id: "u1", items: [{ sku: "burger", qty: 2 }] };

stackTest(
  "POST /orders/{id}/cancel of a CONFIRMED order releases its stock and the student hears confirmed then cancelled, against the broker",
  {},
  async (stack) => {
    const before = await getStock(stack);
    const orderId = await placeOrder(stack, BURGERS);
    await waitForStatus(stack, orderId, "CONFIRMED");
    assert.equal((await getStock(stack)).burger, before.burger - 2);

    const cancelled = await cancelOrder(stack, orderId);
    assert.deepEqual(cancelled, {
      status: 202,
      body: { order_id: orderId, status: "CANCELLED" },
    });
    assert.equal(await orderStatus(stack, orderId), "CANCELLED");
    await waitFor(
      "the stock to be back",
      async () => (await getStock(stack)).burger === before.burger,
    );
    assert.equal((await reservationOf(stack, orderId))?.status, "RELEASED");
    await waitFor(
      "both notifications",
      async () => (await notificationKinds(stack, orderId)).length === 2,
    );
    assert.deepEqual(await notificationKinds(stack, orderId), [
      "order_confirmed",
      "order_cancelled",
    ]);

    assert.deepEqual(
      await cancelOrder(stack, orderId),
      cancelled,
      "a repeat gets the same answer",
    );
    const unknown = await cancelOrder(stack, "01J0000000000000000000NOPE");
    assert.equal(unknown.status, 404);
    assert.equal(typeof unknown.body.error, "string");
    const wrongMethod = await request(`${stack.url("order")}/orders/${orderId}/cancel`);
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get("allow"), "POST");
    assert.equal(typeof (await wrongMethod.json()).error, "string");
    assert.equal((await getStock(stack)).burger, before.burger, "released once");
  },
);

stackTest("cancelling a REJECTED order is a 409 with its status, against the broker", {
  serviceEnv: { inventory: { INVENTORY_FAIL: "true" } },
}, async (stack) => {
  const orderId = await placeOrder(stack, BURGERS);
  await waitForStatus(stack, orderId, "REJECTED");
  const response = await cancelOrder(stack, orderId);
  assert.equal(response.status, 409);
  assert.equal(response.body.status, "REJECTED");
  assert.equal(await orderStatus(stack, orderId), "REJECTED");
});

Deno.test(
  "an order whose OrderPlaced went to the DLQ expires, the student is told, and its replay takes no stock, against the broker",
  INTEGRATION,
  async () => {
    // Every reservation attempt fails until the DLQ takes the event: the order gets no outcome.
    await withStack({
      env: { RETRY_DELAYS: "200ms,200ms", ORDER_DECISION_TIMEOUT: "2s" },
      serviceEnv: { inventory: { FAULT_TRANSIENT_RATE: "1" } },
    }, async (stack) => {
      const before = await getStock(stack);
      const placedAt = Date.now();
      const orderId = await placeOrder(stack, BURGERS);
      const dlq = deadLetterQueue(Queue.orderPlaced);
      await waitForDepth(stack, dlq, 1);
      await waitForStatus(stack, orderId, "EXPIRED");
      const expiredAfterMs = Date.now() - placedAt;
      assert.ok(expiredAfterMs >= 2000, `expired after ${expiredAfterMs} ms`);
      assert.match((await getJson(`${stack.url("order")}/orders/${orderId}`)).body.reason, /2 s/);
      await waitFor(
        "the expiry notification",
        async () => (await notificationKinds(stack, orderId)).length === 1,
      );
      assert.deepEqual(await notificationKinds(stack, orderId), ["order_expired"]);
      const conflict = await cancelOrder(stack, orderId);
      assert.deepEqual([conflict.status, conflict.body.status], [409, "EXPIRED"]);

      // The cancellation reached inventory, whose every handling fails too: it waits in its DLQ.
      await waitForDepth(stack, deadLetterQueue(Queue.orderCancelled), 1);
      await stack.stop("inventory");
      await stack.start("inventory", { FAULT_TRANSIENT_RATE: "0" });
      // Replayed cancellation first, then the OrderPlaced: the late order must take nothing.
      await replayDeadLetters(stack, { queues: [Queue.orderCancelled] });
      await waitFor(
        "the cancellation remembered",
        async () => (await reservationOf(stack, orderId))?.reason === "order cancelled",
      );
      await replayDeadLetters(stack, { queues: [Queue.orderPlaced] });
      await waitFor(
        "the replayed OrderPlaced handled",
        () =>
          stack.services.inventory!.logs.some((line) =>
            line.msg === "reservation failed" && line.order_id === orderId
          ),
      );
      const reservation = await reservationOf(stack, orderId);
      assert.deepEqual([reservation?.status, reservation?.reason], ["FAILED", "order cancelled"]);
      assert.deepEqual(await getStock(stack), before);
      assert.equal(await orderStatus(stack, orderId), "EXPIRED");
      assert.deepEqual(await notificationKinds(stack, orderId), ["order_expired"]);
    });
  },
);

stackTest(
  "an order service that was down expires at its start the orders that became due, against the broker",
  {
    env: { ORDER_DECISION_TIMEOUT: "1s", INVENTORY_STOCK: "burger=10" },
    services: ["order", "notification"],
  },
  async (stack) => {
    const orderId = await placeOrder(stack, BURGERS);
    // A SIGTERM before the broker connection is up waits 10 s for it (a known flaw of main).
    await waitReady(stack);
    assert.equal(await stack.stop("order"), 0);
    const placedAt = Date.now();
    await waitFor("the decision timeout to pass", () => Date.now() - placedAt > 1500);
    await stack.start("order");
    await waitForStatus(stack, orderId, "EXPIRED");
    await waitFor(
      "the expiry notification",
      async () => (await notificationKinds(stack, orderId)).join() === "order_expired",
    );
    // Inventory comes back: whichever of the two events it handles first, no stock is held.
    await stack.start("inventory");
    await waitFor("inventory to handle both events", async () => {
      const reservation = await reservationOf(stack, orderId);
      return reservation?.status === "RELEASED" ||
        ["order cancelled", "order expired"].includes(reservation?.reason ?? "");
    });
    assert.deepEqual(await getStock(stack), { burger: 10 });
    assert.equal(await orderStatus(stack, orderId), "EXPIRED");
    assert.deepEqual(await notificationKinds(stack, orderId), ["order_expired"]);
  },
);
