/**
 * Failure handling against the real broker: retries with growing delays through retry queues, the
 * delivery limit of quorum queues, forced connection closes, and a topology that does not match.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { notificationCount, placeOrder } from "../lib/http_probes.ts";
import { managementApi } from "../lib/management_api.ts";
import { SERVICES, startService } from "../lib/service_process.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { deadLetterQueue, EventType, EXCHANGE, Queue } from "../../shared/topology.ts";
import { inventoryOutcome } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { startTcpProxy } from "../lib/tcp_proxy.ts";

const integration = { sanitizeOps: false, sanitizeResources: false };
const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

interface ParkedMessage {
  payload: string;
  properties: { headers: Record<string, unknown>; message_id?: string };
}

/** Reads a queue's messages through the management API and puts them back. */
function peek(stack: Stack, queue: string): Promise<ParkedMessage[]> {
  return managementApi()("POST", `/api/queues/${stack.vhost.name}/${queue}/get`, {
    count: 100,
    ackmode: "ack_requeue_true",
    encoding: "auto",
  }) as Promise<ParkedMessage[]>;
}

Deno.test(
  "a handler that always fails is retried with each delay, then dead-lettered with the last error, against the broker",
  integration,
  async () => {
    await withStack({
      env: { RETRY_DELAYS: "100ms,200ms" },
      serviceEnv: { notification: { FAULT_TRANSIENT_RATE: "1" } },
    }, async (stack) => {
      const orderId = await placeOrder(stack, BURGER);
      const dlq = deadLetterQueue(Queue.inventoryReserved);
      await waitFor("the outcome in the DLQ", async () => await stack.tools.queueDepth(dlq) === 1);
      const [parked] = await peek(stack, dlq);
      assert.equal(JSON.parse(parked.payload).order_id, orderId);
      assert.equal(parked.properties.headers["x-attempts"], 3);
      assert.match(String(parked.properties.headers["x-last-error"]), /Injected transient fault/);
      assert.match(String(parked.properties.headers["x-rejected-reason"]), /^failed 3 times/);
      const retries = stack.services.notification!.logs.filter((l) =>
        l.msg === "handling failed, retrying later"
      );
      assert.deepEqual(retries.map((l) => [l.attempt, l.delay_ms]), [[1, 100], [2, 200]]);
      assert.equal(await notificationCount(stack, orderId), 0);
    });
  },
);

Deno.test(
  "transient faults at a rate of 0.3 still give every order exactly one notification, against the broker",
  integration,
  async () => {
    await withStack({
      env: { RETRY_DELAYS: "50ms,50ms,100ms,100ms,200ms,200ms", FAULT_TRANSIENT_RATE: "0.3" },
      serviceEnv: { order: { FAULT_TRANSIENT_RATE: "0" } },
    }, async (stack) => {
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
      const stock = await (await fetch(`${stack.url("inventory")}/stock`)).json();
      assert.equal(stock.burger, 500 - 20);
      const retried = [stack.services.inventory!, stack.services.notification!]
        .flatMap((s) => s.logs).filter((l) => l.msg === "handling failed, retrying later");
      assert.ok(retried.length > 0, "some faults were injected and retried");
      for (const queue of [Queue.orderPlaced, Queue.inventoryReserved]) {
        assert.equal(await stack.tools.queueDepth(deadLetterQueue(queue)), 0);
      }
    });
  },
);

Deno.test(
  "a message requeued past the delivery limit is dead-lettered, not redelivered forever, against the broker",
  integration,
  async () => {
    await withStack({ services: [] }, async (stack) => {
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
        await waitFor(
          "the message in the DLQ",
          async () => await stack.tools.queueDepth(dlq) === 1,
        );
        const [parked] = await peek(stack, dlq);
        const [death] = parked.properties.headers["x-death"] as Array<{ reason: string }>;
        assert.equal(death.reason, "delivery_limit");
        assert.equal(deliveries, 11);
      } finally {
        await crashing.stop();
      }
    });
  },
);

Deno.test(
  "every service reconnects after the broker force-closes its connection, against the broker",
  integration,
  async () => {
    await withStack({}, async (stack) => {
      const first = await placeOrder(stack, BURGER);
      await waitFor(
        "the first notification",
        async () => await notificationCount(stack, first) === 1,
      );
      const api = managementApi();
      const connections = await waitFor("the services' connections", async () => {
        const all = await api("GET", `/api/vhosts/${stack.vhost.name}/connections`) as Array<
          { name: string; client_properties: { connection_name?: string } }
        >;
        const ours = all.filter((c) => !c.client_properties.connection_name?.startsWith("harness"));
        return ours.length === 3 && ours;
      });
      for (const connection of connections) {
        await api("DELETE", `/api/connections/${encodeURIComponent(connection.name)}`);
      }
      for (const name of ["order", "inventory", "notification"] as const) {
        await waitFor(
          `${name} to reconnect`,
          () => stack.services[name]!.logs.some((l) => l.msg === "reconnected to broker"),
        );
      }
      const second = await placeOrder(stack, BURGER);
      await waitFor(
        "the second notification",
        async () => await notificationCount(stack, second) === 1,
      );
      for (const name of ["order", "inventory", "notification"] as const) {
        assert.equal((await fetch(`${stack.url(name)}/ready`)).status, 200);
      }
    });
  },
);

/** The node a service's `/metrics` says it is connected to. */
async function connectedNode(url: string): Promise<string | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return /^campus_food_broker_node_connected\{node="([^"]+)"\} 1$/m.exec(text)?.[1];
}

Deno.test(
  "services given two nodes in AMQP_URL move to the other when theirs is cut off, against the broker",
  integration,
  async () => {
    // Two proxies in front of one broker stand for two nodes of a cluster: cutting one is a node loss.
    const nodes = [0, 1].map(() => startTcpProxy({ hostname: "127.0.0.1", port: 5672 }));
    try {
      await withStack({
        // Port 1 stands for a node that is down from the start.
        servicesAmqpUrl: (url) =>
          [1, ...nodes.map((node) => node.port)].map((port) => {
            const node = new URL(url);
            node.port = String(port);
            return node.toString();
          }).join(","),
      }, async (stack) => {
        const first = await placeOrder(stack, BURGER);
        await waitFor(
          "the first notification",
          async () => await notificationCount(stack, first) === 1,
        );
        const address = (node: { port: number }) => `127.0.0.1:${node.port}`;
        const before = await Promise.all(SERVICES.map((name) => connectedNode(stack.url(name))));
        // The order service's node is lost, and whoever else was on it.
        const lost = nodes.find((node) => address(node) === before[0]);
        const live = nodes.find((node) => node !== lost)!;
        assert.ok(lost, `the order service is on one of the two nodes, not ${before[0]}`);
        lost.cut();
        for (const name of SERVICES) {
          await waitFor(
            `${name} to be connected to the live node`,
            async () => await connectedNode(stack.url(name)) === address(live),
          );
        }
        const second = await placeOrder(stack, BURGER);
        await waitFor(
          "the second notification",
          async () => await notificationCount(stack, second) === 1,
        );
        for (const [i, name] of SERVICES.entries()) {
          assert.equal((await fetch(`${stack.url(name)}/ready`)).status, 200);
          if (before[i] !== address(lost)) continue;
          assert.ok(
            stack.services[name]!.logs.some((line) =>
              line.msg === "reconnected to broker" && line.node === address(live)
            ),
            `${name} logs the node it moved to`,
          );
        }
      });
    } finally {
      for (const node of nodes) node.close();
    }
  },
);

Deno.test(
  "a classic queue where a quorum queue belongs gives a clear error and 503 on /ready, against the broker",
  integration,
  async () => {
    await withStack({ services: [] }, async (stack) => {
      const api = managementApi();
      await api("DELETE", `/api/queues/${stack.vhost.name}/${Queue.orderPlaced}`);
      await api("PUT", `/api/queues/${stack.vhost.name}/${Queue.orderPlaced}`, { durable: true });
      const inventory = await stack.start("inventory");
      const line = await waitFor(
        "the error line",
        () => inventory.logs.find((l) => l.level === "error"),
      );
      assert.match(
        String(line.msg),
        /Cannot declare queue "order-placed" as it already exists with other arguments/,
      );
      const ready = await fetch(`${inventory.url}/ready`);
      assert.equal(ready.status, 503);
      assert.match((await ready.json()).failed.broker, /Cannot declare queue "order-placed"/);
      assert.equal((await fetch(`${inventory.url}/health`)).status, 200);
    });
  },
);

Deno.test(
  "a service stops at once on SIGTERM while its broker accepts the connection and never answers",
  integration,
  async () => {
    // A listener that accepts and stays silent: the AMQP handshake would wait for its deadline.
    const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    (async () => {
      for await (const conn of silent) held.push(conn);
    })().catch(() => {});
    const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
    try {
      const order = await startService("order", {
        env: {
          AMQP_URL: `amqp://guest:guest@127.0.0.1:${(silent.addr as Deno.NetAddr).port}/`,
          DATA_DIR: dataDir,
          ORDER_PORT: "0",
        },
      });
      await waitFor("the connection attempt", () => held.length > 0);
      const began = performance.now();
      assert.equal(await order.stop("SIGTERM"), 0);
      // The broker's reply deadline is 10 s: a stop that waited for it would take that long.
      const tookMs = performance.now() - began;
      assert.ok(tookMs < 5000, `stopped after ${Math.round(tookMs)} ms`);
      assert.ok(order.logs.some((line) => line.msg === "stopped"));
    } finally {
      silent.close();
      for (const conn of held) conn.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  },
);
