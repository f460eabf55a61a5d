/**
 * The broker failing under the services, against the real broker: unreachable when orders come
 * in, connections force-closed, a node lost from a list, queues of the wrong type, and a broker
 * that accepts a connection and never answers.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { closeServiceConnections } from "../lib/broker_probes.ts";
import {
  notificationCount,
  orderStatus,
  placeOrder,
  request,
  statusOf,
  waitDecided,
} from "../lib/http_probes.ts";
import { SERVICES, startService } from "../lib/service_process.ts";
import { INTEGRATION, stackTest, withStack } from "../lib/stack.ts";
import { startTcpProxy, viaProxy, withTcpProxy } from "../lib/tcp_proxy.ts";
import { createVhost, managementApi } from "../ops/management_api.ts";
import { keepDeadLettering } from "../lib/broker_check.ts";
import { connectBroker } from "../../shared/broker.ts";
import { recordingLogger } from "../../shared/testing/recording_logger.ts";
import { Queue } from "../../shared/topology.ts";

const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

Deno.test(
  "orders accepted while the broker is unreachable are confirmed after it returns, against the broker",
  INTEGRATION,
  async () => {
    await withTcpProxy(brokerTarget(), async (proxy) => {
      proxy.cut();
      await withStack({ services: ["inventory", "notification"] }, async (stack) => {
        const order = await stack.start("order", {
          AMQP_URL: viaProxy(stack.envOf("order").AMQP_URL, proxy),
        });
        assert.equal(await statusOf(`${order.url}/ready`), 503);
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
        for (const id of orderIds) assert.equal(await waitDecided(stack, id), "CONFIRMED");
        assert.equal(await statusOf(`${order.url}/ready`), 200);
        await waitFor(
          "5 notifications",
          async () =>
            (await Promise.all(orderIds.map((id) => notificationCount(stack, id)))).every((n) =>
              n === 1
            ),
        );
      });
    });
  },
);

stackTest(
  "every service reconnects after the broker force-closes its connection, against the broker",
  {},
  async (stack) => {
    const first = await placeOrder(stack, BURGER);
    await waitFor(
      "the first notification",
      async () => await notificationCount(stack, first) === 1,
    );
    assert.equal(await closeServiceConnections(stack), SERVICES.length);
    for (const name of SERVICES) {
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
    for (const name of SERVICES) assert.equal(await statusOf(`${stack.url(name)}/ready`), 200);
  },
);

/** The node a service's `/metrics` says it is connected to. */
async function connectedNode(url: string): Promise<string | undefined> {
  const text = await (await request(`${url}/metrics`)).text();
  return /^campus_food_broker_node_connected\{node="([^"]+)"\} 1$/m.exec(text)?.[1];
}

Deno.test(
  "services given two nodes in AMQP_URL move to the other when theirs is cut off, against the broker",
  INTEGRATION,
  async () => {
    // Two proxies in front of one broker stand for two nodes of a cluster: cutting one is a node loss.
    const nodes = [0, 1].map(() => startTcpProxy(brokerTarget()));
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
          assert.equal(await statusOf(`${stack.url(name)}/ready`), 200);
          if (before[i] !== address(lost)) continue;
          // "connected", not "reconnected", when the cut came before its set-up on the lost node
          // was complete (its first consumer may already have handled the first order).
          await waitFor(
            `${name} to log the node it moved to`,
            () =>
              stack.services[name]!.logs.some((line) =>
                /^(re)?connected to broker$/.test(String(line.msg)) && line.node === address(live)
              ),
          );
        }
      });
    } finally {
      for (const node of nodes) node.close();
    }
  },
);

stackTest(
  "a classic queue where a quorum queue belongs gives a clear error and 503 on /ready, against the broker",
  // A service that declares finds the mismatch; one that may only check passively cannot, and
  // broker:setup finds it instead (security_test.ts).
  { services: [], secure: false },
  async (stack) => {
    const api = managementApi(stack.managementUrl);
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
    assert.equal(await statusOf(`${inventory.url}/health`), 200);
  },
);

Deno.test(
  "a service stops at once on SIGTERM while its broker accepts the connection and never answers",
  INTEGRATION,
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

Deno.test(
  "a consumer counts as unattached until it subscribes, and again from a lost connection until it subscribes anew, against the broker",
  INTEGRATION,
  async () => {
    await keepDeadLettering("a test vhost");
    const vhost = await createVhost();
    const proxy = startTcpProxy(brokerTarget());
    const { log } = recordingLogger();
    const broker = connectBroker(viaProxy(vhost.amqpUrl, proxy), {
      log,
      connectionName: "unattached-test",
      initialDelayMs: 50,
      maxDelayMs: 200,
    });
    try {
      await waitFor("the broker connection", () => broker.connected);
      const consumer = broker.consume(Queue.orderPlaced, (batch) => {
        return Promise.resolve(batch.map(() => ({ action: "ack" as const })));
      });
      // Subscribing takes a round trip to the broker: the moment after consume() is before it.
      assert.deepEqual(broker.unattachedQueues, [Queue.orderPlaced]);
      await waitFor("the consumer to subscribe", () => broker.unattachedQueues.length === 0);
      proxy.cut();
      await waitFor("the connection to drop", () => !broker.connected);
      assert.deepEqual(broker.unattachedQueues, [Queue.orderPlaced]);
      proxy.restore();
      await waitFor(
        "the consumer to subscribe again",
        () => broker.connected && broker.unattachedQueues.length === 0,
      );
      await consumer.stop();
      assert.deepEqual(broker.unattachedQueues, []);
    } finally {
      await broker.close();
      proxy.close();
      await vhost.delete();
    }
  },
);
