/**
 * Event origin against the real broker (SPEC guarantee 9): with a broker user per service, a
 * consumer acts only on events from the service allowed to publish them, whatever route a
 * neighbour's forgery takes (a `CC` header through the retry exchange, a DLQ and the operator's
 * replay), while the services' own retries and replays are believed as before.
 */
import assert from "node:assert/strict";
// The raw client, not shared/broker.ts: a forger does what no service ever does.
import amqp from "amqplib";
import { Buffer } from "node:buffer";
import { waitFor } from "../lib/async.ts";
import { ACCESS_REFUSED, attempt, publishTo } from "../lib/broker_attempt.ts";
import { waitForDepth } from "../lib/broker_probes.ts";
import { getJson } from "../lib/http_probes.ts";
import { harnessToken } from "../lib/secure_mode.ts";
import { INTEGRATION, type Stack, stackTest } from "../lib/stack.ts";
import { type BrokerUser, setUpBroker } from "../ops/broker_definitions.ts";
import { createVhost, managementApi } from "../ops/management_api.ts";
import { keepDeadLettering } from "../lib/broker_check.ts";
import { listDeadLetters, replayDeadLetters } from "../ops/dlq.ts";
import { type Event, inventoryOutcome, orderConfirmed } from "../../shared/events.ts";
import { brokerUserOf, OPERATOR, UNTRUSTED_PUBLISHER } from "../../shared/origin.ts";
import {
  DEAD_LETTER_EXCHANGE,
  deadLetterQueue,
  EventType,
  EXCHANGE,
  Queue,
  RETRY_EXCHANGE,
  retryQueue,
  type ServiceName,
  SERVICES,
} from "../../shared/topology.ts";

const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

/** Asks `path` of service `name` as an admin: these stacks want tokens whatever HARNESS_SECURE says. */
async function askAsAdmin(
  stack: Stack,
  name: ServiceName,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown }> {
  const token = await harnessToken("harness", { role: "admin" });
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  return await getJson(`${stack.url(name)}${path}`, { ...init, headers });
}

async function placeOrder(stack: Stack): Promise<string> {
  const placed = await askAsAdmin(stack, "order", "/order", {
    method: "POST",
    body: JSON.stringify(BURGER),
  });
  assert.equal(placed.status, 202);
  return (placed.body as { order_id: string }).order_id;
}

async function orderStatus(stack: Stack, orderId: string): Promise<string> {
  return ((await askAsAdmin(stack, "order", `/orders/${orderId}`)).body as { status: string })
    .status;
}

async function notificationCount(stack: Stack, orderId: string): Promise<number> {
  const answer = await askAsAdmin(stack, "notification", `/notifications?order_id=${orderId}`);
  return (answer.body as unknown[]).length;
}

/**
 * Publishes `event` (an `InventoryReserved` for `orderId` unless given) as `service`'s broker user
 * would, with `user_id` set to that user as the broker demands, to `exchange` under `routingKey`
 * and `headers`.
 */
async function forge(
  stack: Stack,
  as: ServiceName,
  to: { exchange: string; routingKey: string; headers?: Record<string, unknown> },
  orderId: string,
  event: Event = inventoryOutcome({ order_id: orderId, ...BURGER }),
): Promise<void> {
  const url = new URL(stack.envOf(as).AMQP_URL.split(",")[0]);
  const connection = await amqp.connect(url.toString());
  try {
    const channel = await connection.createConfirmChannel();
    await new Promise<void>((resolve, reject) =>
      channel.publish(to.exchange, to.routingKey, Buffer.from(JSON.stringify(event)), {
        persistent: true,
        contentType: "application/json",
        messageId: event.event_id,
        correlationId: orderId,
        type: event.event_type,
        userId: decodeURIComponent(url.username),
        headers: to.headers,
      }, (error) => error ? reject(error) : resolve())
    );
  } finally {
    await connection.close();
  }
}

/** Waits for one untrusted publisher's message in the DLQ of `queue`, and returns it. */
async function untrustedIn(stack: Stack, queue: Queue): Promise<void> {
  await waitForDepth(stack, deadLetterQueue(queue), 1);
  const [letter] = await listDeadLetters(stack.tools, { queues: [queue] });
  assert.equal(letter.reason, UNTRUSTED_PUBLISHER);
}

stackTest(
  "an InventoryReserved that notification's user routes through the retry exchange with a CC header changes no order, against the broker",
  { secure: true, services: ["order", "notification"] },
  async (stack) => {
    const orderId = await placeOrder(stack);
    // Its own retry queue is what its topic permission allows; RabbitMQ before 4.0.3 does not hold
    // the CC header to it, so the copy also lands in the order service's retry queue.
    await forge(stack, "notification", {
      exchange: RETRY_EXCHANGE,
      routingKey: retryQueue(Queue.orderConfirmed, 1000),
      headers: { CC: [retryQueue(Queue.inventoryReserved, 1000)] },
    }, orderId);
    await untrustedIn(stack, Queue.inventoryReserved);
    assert.equal(await orderStatus(stack, orderId), "PENDING", "inventory never reserved it");
    assert.equal(await notificationCount(stack, orderId), 0);
  },
);

stackTest(
  "an OrderConfirmed that inventory's user routes with a CC header tells no student, against the broker",
  { secure: true, services: ["order", "notification"] },
  async (stack) => {
    const orderId = await placeOrder(stack);
    // InventoryReserved is a routing key inventory may publish; the CC header takes the copy on
    // to the queue of the order service's decisions.
    await forge(
      stack,
      "inventory",
      {
        exchange: EXCHANGE,
        routingKey: EventType.InventoryReserved,
        headers: { CC: [EventType.OrderConfirmed] },
      },
      orderId,
      orderConfirmed({ order_id: orderId, ...BURGER }),
    );
    await untrustedIn(stack, Queue.orderConfirmed);
    assert.equal(await notificationCount(stack, orderId), 0, "only the order service decides");
  },
);

stackTest(
  "an event planted in a DLQ by another service's user is replayed as that user and refused again, against the broker",
  { secure: true, services: ["order", "notification"] },
  async (stack) => {
    const orderId = await placeOrder(stack);
    await forge(stack, "notification", {
      exchange: DEAD_LETTER_EXCHANGE,
      routingKey: Queue.inventoryReserved,
      headers: { "x-original-routing-key": EventType.InventoryReserved },
    }, orderId);
    await waitForDepth(stack, deadLetterQueue(Queue.inventoryReserved), 1);
    const [planted] = await listDeadLetters(stack.tools, { queues: [Queue.inventoryReserved] });
    assert.match(planted.published_by, /-notification$/);

    assert.equal((await replayDeadLetters(stack, { queues: [Queue.inventoryReserved] })).length, 1);
    await waitFor(
      "the replay to be refused",
      async () =>
        (await listDeadLetters(stack.tools, { queues: [Queue.inventoryReserved] }))[0]?.reason ===
          UNTRUSTED_PUBLISHER,
    );
    assert.equal(await orderStatus(stack, orderId), "PENDING");
  },
);

stackTest(
  "a message a service retried and parked itself is replayed as its publisher and believed, against the broker",
  {
    secure: true,
    env: { RETRY_DELAYS: "50ms" },
    serviceEnv: { notification: { FAULT_TRANSIENT_RATE: "1" } },
  },
  async (stack) => {
    const orderId = await placeOrder(stack);
    await waitForDepth(stack, deadLetterQueue(Queue.orderConfirmed), 1);
    const [parked] = await listDeadLetters(stack.tools, { queues: [Queue.orderConfirmed] });
    assert.match(parked.reason, /Injected transient fault/, "retried, so believed on its return");
    assert.match(parked.published_by, /-order$/);

    await stack.stop("notification");
    await stack.start("notification", { FAULT_TRANSIENT_RATE: "0" });
    assert.equal((await replayDeadLetters(stack)).length, 1);
    await waitFor("the notification", async () => await notificationCount(stack, orderId) === 1);
    assert.equal(await stack.tools.queueDepth(deadLetterQueue(Queue.orderConfirmed)), 0);
  },
);

Deno.test(
  "broker:setup's operator may read the DLQs, tap the events and replay into a queue as its publisher, and nothing else, against the broker",
  INTEGRATION,
  async () => {
    const api = managementApi();
    await keepDeadLettering("a test vhost");
    const vhost = await createVhost();
    const users = Object.fromEntries(
      SERVICES.map((name) => [name, {
        name: brokerUserOf(name, vhost.name),
        password: crypto.randomUUID(),
      }]),
    ) as Record<ServiceName, BrokerUser>;
    const operator = { name: brokerUserOf(OPERATOR, vhost.name), password: crypto.randomUUID() };
    const url = new URL(vhost.amqpUrl);
    url.username = operator.name;
    url.password = operator.password;
    try {
      await setUpBroker(api, { vhost: vhost.name, users, operator });
      const connection = await amqp.connect(url.toString());
      connection.on("error", () => {});
      try {
        const may = (operation: (channel: amqp.ConfirmChannel) => Promise<unknown>) =>
          attempt(connection, operation);
        assert.equal(await may(publishTo("", Queue.inventoryReserved, users.inventory.name)), "ok");
        assert.equal(await may((c) => c.get(deadLetterQueue(Queue.inventoryReserved))), "ok");
        assert.equal(
          await may(async (c) => {
            const { queue } = await c.assertQueue("", { exclusive: true });
            await c.bindQueue(queue, EXCHANGE, EventType.OrderPlaced);
          }),
          "ok",
          "the console's tap",
        );
        assert.equal(
          await may(publishTo(EXCHANGE, EventType.OrderPlaced, operator.name)),
          ACCESS_REFUSED,
        );
        assert.equal(
          await may(publishTo(DEAD_LETTER_EXCHANGE, Queue.orderPlaced, operator.name)),
          ACCESS_REFUSED,
        );
        assert.equal(await may((c) => c.get(Queue.orderPlaced)), ACCESS_REFUSED);
        assert.equal(await may((c) => c.purgeQueue(Queue.orderPlaced)), ACCESS_REFUSED);
        assert.equal(await may((c) => c.deleteQueue(Queue.orderPlaced)), ACCESS_REFUSED);
      } finally {
        await connection.close();
      }
    } finally {
      await vhost.delete();
      for (const user of [...Object.values(users), operator]) {
        await api("DELETE", `/api/users/${encodeURIComponent(user.name)}`).catch(() => {});
      }
    }
  },
);
