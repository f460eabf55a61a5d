/**
 * The whole system against the real broker: each test runs its own stack (vhost, data directory,
 * ports) of the three real services, drives it over HTTP and AMQP, and asserts what it can observe.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { managementApi } from "../lib/management_api.ts";
import { type RunningService, startService } from "../lib/service_process.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { startTcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import { deadLetterQueue, EventType, EXCHANGE, Queue } from "../../shared/topology.ts";
import { type OrderPlaced, orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import type { Notification } from "../../notification/notifications.ts";

const integration = { sanitizeOps: false, sanitizeResources: false };

async function postOrder(
  stack: Stack,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return await fetch(`${stack.url("order")}/order`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function placeOrder(stack: Stack, body: unknown): Promise<string> {
  const response = await postOrder(stack, body);
  assert.equal(response.status, 202, await response.clone().text());
  return (await response.json()).order_id;
}

// deno-lint-ignore no-explicit-any -- responses are checked field by field by the assertions
async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

function orderStatus(stack: Stack, orderId: string): Promise<string> {
  return getJson(`${stack.url("order")}/orders/${orderId}`).then((r) => r.body.status);
}

function waitForFinalStatus(stack: Stack, orderId: string): Promise<string> {
  return waitFor(`order ${orderId} to be decided`, async () => {
    const status = await orderStatus(stack, orderId);
    return status !== "PENDING" && status;
  });
}

async function notifications(stack: Stack, orderId: string): Promise<Notification[]> {
  return (await getJson(`${stack.url("notification")}/notifications?order_id=${orderId}`)).body;
}

async function stock(stack: Stack): Promise<Record<string, number>> {
  return (await getJson(`${stack.url("inventory")}/stock`)).body;
}

function publishOrderPlaced(
  stack: Stack,
  event: OrderPlaced | string,
  messageId = "raw",
): Promise<void> {
  const body = typeof event === "string" ? event : JSON.stringify(event);
  return stack.broker.publish([{
    exchange: EXCHANGE,
    routingKey: EventType.OrderPlaced,
    body,
    messageId: typeof event === "string" ? messageId : event.event_id,
    type: EventType.OrderPlaced,
  }]);
}

const OUTCOMES = [EventType.InventoryReserved, EventType.InventoryFailed];

Deno.test(
  "the seed's curl ends CONFIRMED with one reservation, one stock change and one notification, against the broker",
  integration,
  async () => {
    await withStack({}, async (stack) => {
      const tap = await stack.tools.tap(OUTCOMES);
      const before = await stock(stack);
      const response = await postOrder(stack, {
        user_id: "u1",
        items: [{ sku: "burger", qty: 1 }],
      });
      assert.equal(response.status, 202);
      const { order_id, status } = await response.json();
      assert.equal(status, "PENDING");
      assert.equal(response.headers.get("location"), `/orders/${order_id}`);

      assert.equal(await waitForFinalStatus(stack, order_id), "CONFIRMED");
      const reservation = await getJson(`${stack.url("inventory")}/reservations/${order_id}`);
      assert.equal(reservation.status, 200);
      assert.equal(reservation.body.status, "RESERVED");
      assert.deepEqual(reservation.body.items, [{ sku: "burger", qty: 1 }]);
      assert.equal((await stock(stack)).burger, before.burger - 1);
      const sent = await waitFor(
        "the notification",
        async () =>
          (await notifications(stack, order_id)).length > 0 && notifications(stack, order_id),
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
    });
  },
);

Deno.test(
  "INVENTORY_FAIL=true rejects every order with reason 'simulated failure', against the broker",
  integration,
  async () => {
    await withStack({ serviceEnv: { inventory: { INVENTORY_FAIL: "true" } } }, async (stack) => {
      const before = await stock(stack);
      const orderId = await placeOrder(stack, {
        user_id: "u1",
        items: [{ sku: "burger", qty: 1 }],
      });
      assert.equal(await waitForFinalStatus(stack, orderId), "REJECTED");
      const order = await getJson(`${stack.url("order")}/orders/${orderId}`);
      assert.equal(order.body.reason, "simulated failure");
      const reservation = await getJson(`${stack.url("inventory")}/reservations/${orderId}`);
      assert.deepEqual([reservation.body.status, reservation.body.reason], [
        "FAILED",
        "simulated failure",
      ]);
      assert.deepEqual(await stock(stack), before);
      const sent = await waitFor(
        "the notification",
        async () => (await notifications(stack, orderId)).at(0),
      );
      assert.equal(sent.kind, "order_rejected");
    });
  },
);

Deno.test(
  "concurrent orders for the last items confirm exactly as many as there are, against the broker",
  integration,
  async () => {
    await withStack(
      { serviceEnv: { inventory: { INVENTORY_STOCK: "burger=3,fries=100" } } },
      async (stack) => {
        const orderIds = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            placeOrder(stack, {
              user_id: `u${i}`,
              items: [{ sku: "fries", qty: 1 }, { sku: "burger", qty: 1 }],
            })),
        );
        const statuses = await Promise.all(orderIds.map((id) => waitForFinalStatus(stack, id)));
        assert.equal(
          statuses.filter((s) => s === "CONFIRMED").length,
          3,
        );
        assert.equal(statuses.filter((s) => s === "REJECTED").length, 9);
        // All or nothing: the rejected orders took no fries either.
        assert.deepEqual(await stock(stack), { burger: 0, fries: 97 });
      },
    );
  },
);

Deno.test(
  "the same OrderPlaced published three times has one effect of each kind, against the broker",
  integration,
  async () => {
    await withStack({}, async (stack) => {
      const tap = await stack.tools.tap(OUTCOMES);
      const before = await stock(stack);
      const event = orderPlaced({
        order_id: newId(),
        user_id: "u1",
        items: [{ sku: "pizza", qty: 2 }],
        created_at: new Date().toISOString(),
      });
      for (let i = 0; i < 3; i++) await publishOrderPlaced(stack, event);
      const sent = await waitFor(
        "the notification",
        async () => (await notifications(stack, event.order.order_id)).at(0),
      );
      assert.equal(sent.kind, "order_confirmed");
      await waitFor(
        "inventory to see all three copies",
        () =>
          stack.services.inventory!.logs.filter((l) => l.event_id === event.event_id).length === 3,
      );
      assert.equal((await stock(stack)).pizza, before.pizza - 2);
      assert.equal(tap.messages.length, 1);
      assert.equal((await notifications(stack, event.order.order_id)).length, 1);
      assert.equal(
        stack.services.inventory!.logs.filter((l) => l.msg === "skipped duplicate").length,
        2,
      );
    });
  },
);

Deno.test(
  "two events for one order have one effect of each kind, against the broker",
  integration,
  async () => {
    await withStack({}, async (stack) => {
      const tap = await stack.tools.tap(OUTCOMES);
      const before = await stock(stack);
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
        async () => (await notifications(stack, order.order_id)).length === 1,
      );
      assert.equal((await stock(stack)).salad, before.salad - 1);
      assert.equal(tap.messages.length, 1);
    });
  },
);

Deno.test(
  "poison goes to order-placed.dlq with the reason while valid orders behind it flow, against the broker",
  integration,
  async () => {
    await withStack({}, async (stack) => {
      await publishOrderPlaced(stack, "not json", "poison-1");
      await publishOrderPlaced(
        stack,
        JSON.stringify({ invalid: "json", no: "order field" }),
        "poison-2",
      );
      const orderId = await placeOrder(stack, { user_id: "u1", items: [{ sku: "soda", qty: 1 }] });
      assert.equal(await waitForFinalStatus(stack, orderId), "CONFIRMED");
      await waitFor(
        "both poison messages in the DLQ",
        async () => await stack.tools.queueDepth(deadLetterQueue(Queue.orderPlaced)) === 2,
      );
      const api = managementApi();
      const parked = await api(
        "POST",
        `/api/queues/${stack.vhost.name}/${deadLetterQueue(Queue.orderPlaced)}/get`,
        {
          count: 10,
          ackmode: "ack_requeue_true",
          encoding: "auto",
        },
      ) as Array<{ payload: string; properties: { headers: Record<string, string> } }>;
      assert.deepEqual(
        parked.map((m) => m.payload),
        ["not json", '{"invalid":"json","no":"order field"}'],
      );
      assert.match(parked[0].properties.headers["x-rejected-reason"], /^body is not JSON/);
      assert.match(parked[1].properties.headers["x-rejected-reason"], /event_id: .*order: /);
      assert.equal(await stack.tools.queueDepth(Queue.orderPlaced), 0);
      assert.equal((await fetch(`${stack.url("inventory")}/health`)).status, 200);
    });
  },
);

Deno.test(
  "every bad HTTP input gets its status and stores or publishes nothing, against the broker",
  integration,
  async () => {
    await withStack({ services: ["order"] }, async (stack) => {
      const cases: Array<[string, RequestInit, number]> = [
        ["invalid JSON", { body: "{", headers: { "content-type": "application/json" } }, 400],
        ["missing items", {
          body: '{"user_id":"u1"}',
          headers: { "content-type": "application/json" },
        }, 400],
        ["qty too big", {
          body: '{"user_id":"u1","items":[{"sku":"burger","qty":101}]}',
          headers: { "content-type": "application/json" },
        }, 400],
        ["unknown field", {
          body: '{"user_id":"u1","items":[{"sku":"burger","qty":1}],"x":1}',
          headers: { "content-type": "application/json" },
        }, 400],
        ["not JSON", {
          body: "user_id=u1",
          headers: { "content-type": "application/x-www-form-urlencoded" },
        }, 415],
        ["too large", {
          body: JSON.stringify({ user_id: "u1", items: [{ sku: "x".repeat(70_000), qty: 1 }] }),
          headers: { "content-type": "application/json" },
        }, 413],
      ];
      for (const [name, init, expected] of cases) {
        const response = await fetch(`${stack.url("order")}/order`, { method: "POST", ...init });
        assert.equal(response.status, expected, name);
        assert.ok(typeof (await response.json()).error === "string", name);
      }
      const invalid =
        await (await postOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 0 }] }))
          .json();
      assert.equal(invalid.issues[0].field, "items[0].qty");
      // A valid order afterwards is the first and only message: nothing was published before it.
      await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] });
      await waitFor(
        "the valid order in order-placed",
        async () => await stack.tools.queueDepth(Queue.orderPlaced) === 1,
      );
    });
  },
);

Deno.test(
  "orders accepted while the broker is unreachable are confirmed after it returns, against the broker",
  integration,
  async () => {
    const proxy = startTcpProxy({ hostname: "127.0.0.1", port: 5672 });
    proxy.cut();
    try {
      await withStack({ services: ["inventory", "notification"] }, async (stack) => {
        const order = await startOrderService(stack, viaProxy(stack.vhost.amqpUrl, proxy));
        assert.equal((await fetch(`${order.url}/ready`)).status, 503);
        const orderIds: string[] = [];
        for (let i = 0; i < 5; i++) {
          orderIds.push(
            await placeOrder(stack, { user_id: "u1", items: [{ sku: "coffee", qty: 1 }] }),
          );
        }
        assert.deepEqual(
          await Promise.all(orderIds.map((id) => orderStatus(stack, id))),
          Array(5).fill("PENDING"),
        );
        proxy.restore();
        for (const id of orderIds) assert.equal(await waitForFinalStatus(stack, id), "CONFIRMED");
        assert.equal((await fetch(`${order.url}/ready`)).status, 200);
        await waitFor(
          "5 notifications",
          async () =>
            (await Promise.all(orderIds.map((id) => notifications(stack, id)))).every((n) =>
              n.length === 1
            ),
        );
      });
    } finally {
      proxy.close();
    }
  },
);

async function startOrderService(stack: Stack, amqpUrl: string): Promise<RunningService> {
  const service = await startService("order", {
    env: { AMQP_URL: amqpUrl, DATA_DIR: stack.dataDir, ORDER_PORT: "0" },
  });
  stack.services.order = service;
  return service;
}

Deno.test(
  "a restart with the same data directory changes nothing, against the broker",
  integration,
  async () => {
    await withStack(
      { serviceEnv: { inventory: { INVENTORY_STOCK: "burger=5" } } },
      async (stack) => {
        const tap = await stack.tools.tap(OUTCOMES);
        const orderIds: string[] = [];
        for (let i = 0; i < 3; i++) {
          orderIds.push(
            await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] }),
          );
        }
        for (const id of orderIds) await waitForFinalStatus(stack, id);
        await waitFor(
          "3 notifications",
          async () =>
            (await Promise.all(orderIds.map((id) => notifications(stack, id)))).every((n) =>
              n.length === 1
            ),
        );
        const before = { stock: await stock(stack), outcomes: tap.messages.length };
        assert.deepEqual(before, { stock: { burger: 2 }, outcomes: 3 });

        for (const name of ["order", "inventory", "notification"] as const) {
          assert.equal(await stack.stop(name), 0);
        }
        for (const name of ["order", "inventory", "notification"] as const) {
          await stack.start(name);
        }
        await waitFor(
          "the services to be ready",
          async () =>
            (await Promise.all(
              ["order", "inventory", "notification"].map((n) =>
                fetch(`${stack.url(n as "order")}/ready`).then((r) => r.status)
              ),
            )).every((s) => s === 200),
        );

        assert.deepEqual(await stock(stack), { burger: 2 }, "stock is not seeded again");
        for (const id of orderIds) {
          assert.equal(await orderStatus(stack, id), "CONFIRMED");
          assert.equal((await notifications(stack, id)).length, 1);
        }
        // A new order still flows, and is the only new outcome.
        const next = await placeOrder(stack, { user_id: "u1", items: [{ sku: "burger", qty: 1 }] });
        assert.equal(await waitForFinalStatus(stack, next), "CONFIRMED");
        await waitFor("the 4th outcome", () => tap.messages.length === 4);
      },
    );
  },
);
