/**
 * The order service alone decides, and the student hears only its decisions (SPEC guarantee 7),
 * against the real broker: inventory's outcome for an order the order service cannot hear in time
 * tells the student nothing, and the order's expiry is all they are told.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { waitForDepth } from "../lib/broker_probes.ts";
import {
  getStock,
  notificationKinds,
  orderStatus,
  placeOrder,
  reservationOf,
  waitReady,
} from "../lib/http_probes.ts";
import { INTEGRATION, withStack } from "../lib/stack.ts";
import { viaProxy, withTcpProxy } from "../lib/tcp_proxy.ts";
import { Queue } from "../../shared/topology.ts";

const ORDERS = 6;
const PIZZA = { user_id: "u1", items: [{ sku: "pizza", qty: 1 }] };

Deno.test(
  "an order whose outcome the order service cannot hear before its deadline is told EXPIRED and never CONFIRMED, against the broker",
  INTEGRATION,
  async () => {
    await withTcpProxy(brokerTarget(), async (proxy) => {
      await withStack({
        services: ["notification"],
        env: { ORDER_DECISION_TIMEOUT: "6s" },
      }, async (stack) => {
        await stack.start("order", { AMQP_URL: viaProxy(stack.envOf("order").AMQP_URL, proxy) });
        await waitReady(stack);
        const orderIds: string[] = [];
        for (let i = 0; i < ORDERS; i++) orderIds.push(await placeOrder(stack, PIZZA));
        // Every OrderPlaced is out; then the order service loses the broker, and inventory comes.
        await waitForDepth(stack, Queue.orderPlaced, ORDERS);
        proxy.cut();
        await stack.start("inventory");
        await waitForEvery("inventory to reserve every order before its deadline", orderIds, {
          read: (id) => reservationOf(stack, id),
          until: (reservation) => reservation?.status === "RESERVED",
        });
        await waitForEvery("every order to expire on the order service's clock", orderIds, {
          read: (id) => orderStatus(stack, id),
          until: (status) => status === "EXPIRED",
        });
        proxy.restore();
        await waitForEvery("inventory to release what it reserved", orderIds, {
          read: (id) => reservationOf(stack, id),
          until: (reservation) => reservation?.status === "RELEASED",
        });
        await waitForEvery("every student to be told", orderIds, {
          read: (id) => notificationKinds(stack, id),
          until: (kinds) => kinds.length > 0,
        });
        for (const id of orderIds) {
          assert.deepEqual(await notificationKinds(stack, id), ["order_expired"], id);
        }
        await waitFor(
          "the outcomes to be consumed",
          async () => await stack.tools.queueDepth(Queue.inventoryReserved) === 0,
        );
        assert.deepEqual(
          await Promise.all(orderIds.map((id) => orderStatus(stack, id))),
          Array(ORDERS).fill("EXPIRED"),
          "an outcome after the deadline changes nothing",
        );
        assert.equal((await getStock(stack)).pizza, 300, "every unit given back");
      });
    });
  },
);

/** Waits, as `what`, until `until` holds of what `read` says of every one of `orderIds`. */
async function waitForEvery<T>(
  what: string,
  orderIds: readonly string[],
  check: { read(id: string): Promise<T>; until(value: T): boolean },
): Promise<void> {
  await waitFor(what, async () => (await Promise.all(orderIds.map(check.read))).every(check.until));
}
