/**
 * Security against the real broker: what each service's broker user is refused, the whole system
 * running with those users and with bearer tokens, and no password leaving a service.
 */
import assert from "node:assert/strict";
// The raw client, not shared/broker.ts: these tests try what no service ever does.
import amqp from "amqplib";
import { waitFor } from "../lib/async.ts";
import { ACCESS_REFUSED, attempt, publishTo } from "../lib/broker_attempt.ts";
import { createVhost, managementApi, type Vhost } from "../ops/management_api.ts";
import { keepDeadLettering } from "../lib/broker_check.ts";
import {
  type RunningService,
  type ServiceName,
  SERVICES,
  startService,
} from "../lib/service_process.ts";
import { request } from "../lib/http_probes.ts";
import { INTEGRATION, stackTest, withStack } from "../lib/stack.ts";
import { type BrokerUser, setUpBroker } from "../ops/broker_definitions.ts";
import { HARNESS_JWT_SECRET, harnessToken } from "../lib/secure_mode.ts";
import {
  deadLetterQueue,
  DEFAULT_RETRY_DELAYS_MS,
  EventType,
  EXCHANGE,
  Queue,
  RETIRED_QUEUE,
  retiredQueues,
  RETRY_EXCHANGE,
} from "../../shared/topology.ts";
import { REDACTED } from "../../shared/redact.ts";

/** A vhost set up by broker:setup with a user per service, all deleted after `fn`. */
async function withSetUpVhost(
  fn: (vhost: Vhost, users: Record<ServiceName, BrokerUser>) => Promise<void>,
): Promise<void> {
  const api = managementApi();
  await keepDeadLettering("a test vhost");
  const vhost = await createVhost();
  const users = Object.fromEntries(
    SERVICES.map((
      name,
    ) => [name, { name: `${vhost.name}-${name}`, password: crypto.randomUUID() }]),
  ) as Record<ServiceName, BrokerUser>;
  try {
    await setUpBroker(api, { vhost: vhost.name, users });
    await fn(vhost, users);
  } finally {
    await vhost.delete();
    for (const user of Object.values(users)) {
      await api("DELETE", `/api/users/${encodeURIComponent(user.name)}`).catch(() => {});
    }
  }
}

function urlAs(vhost: Vhost, user: BrokerUser): string {
  const url = new URL(vhost.amqpUrl);
  url.username = user.name;
  url.password = user.password;
  return url.toString();
}

Deno.test(
  "broker:setup gives inventory a user that may do only what inventory does, against the broker",
  INTEGRATION,
  async () => {
    await withSetUpVhost(async (vhost, users) => {
      const connection = await amqp.connect(urlAs(vhost, users.inventory));
      connection.on("error", () => {});
      try {
        const may = (operation: (channel: amqp.ConfirmChannel) => Promise<unknown>) =>
          attempt(connection, operation);
        assert.equal(
          await may((c) => c.consume(Queue.inventoryReserved, () => {})),
          ACCESS_REFUSED,
        );
        assert.equal(
          await may((c) => c.deleteQueue(deadLetterQueue(Queue.orderPlaced))),
          ACCESS_REFUSED,
        );
        assert.equal(
          await may((c) => c.purgeQueue(deadLetterQueue(Queue.orderPlaced))),
          ACCESS_REFUSED,
        );
        assert.equal(await may(publishTo(EXCHANGE, EventType.OrderPlaced)), ACCESS_REFUSED);
        assert.equal(
          await may(publishTo("", Queue.orderPlaced)),
          ACCESS_REFUSED,
          "default exchange",
        );
        assert.equal(
          await may(publishTo(RETRY_EXCHANGE, `${Queue.inventoryReserved}.retry.1s`)),
          ACCESS_REFUSED,
          "another service's retry queue",
        );
        assert.equal(await may((c) => c.assertQueue("stray", { durable: true })), ACCESS_REFUSED);
        // What inventory does.
        assert.equal(await may((c) => c.consume(Queue.orderPlaced, () => {})), "ok");
        assert.equal(await may((c) => c.consume(Queue.orderCancelled, () => {})), "ok");
        assert.equal(await may(publishTo(EXCHANGE, EventType.InventoryReserved)), "ok");
        assert.equal(await may(publishTo(RETRY_EXCHANGE, `${Queue.orderPlaced}.retry.5s`)), "ok");
        assert.equal(await may((c) => c.checkQueue(Queue.inventoryReserved)), "ok", "passive");
      } finally {
        await connection.close();
      }
    });
  },
);

Deno.test(
  "a service that may not declare names a missing queue and broker:setup, and connects once the queue is there, against the broker",
  INTEGRATION,
  async () => {
    await withSetUpVhost(async (vhost, users) => {
      const missing = `${Queue.inventoryReserved}.retry.5s`;
      const api = managementApi();
      const queuePath = `/api/queues/${encodeURIComponent(vhost.name)}/${missing}`;
      await api("DELETE", queuePath);
      const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
      let order: RunningService | undefined;
      try {
        order = await startService("order", {
          env: { AMQP_URL: urlAs(vhost, users.order), DATA_DIR: dataDir, ORDER_PORT: "0" },
        });
        const line = await waitFor(
          "the error line",
          () => order!.logs.find((record) => record.level === "error"),
        );
        assert.match(String(line.msg), new RegExp(`queue "${missing}" as it does not exist`));
        assert.match(String(line.msg), /deno task broker:setup/);
        const ready = await request(`${order.url}/ready`);
        assert.equal(ready.status, 503);
        assert.match((await ready.json()).failed.broker, new RegExp(missing));

        await setUpBroker(api, { vhost: vhost.name, users });
        await waitFor(
          "the order service to be ready",
          async () => (await request(`${order!.url}/ready`)).status === 200,
          { timeoutMs: 30_000 },
        );
        const connected = await waitFor(
          "the connected line",
          () => order!.logs.find((record) => record.msg === "connected to broker"),
        );
        assert.equal(connected.topology, "checked");
        assert.equal(order.logs.filter((record) => record.level === "error").length, 1);
      } finally {
        await order?.stop();
        await Deno.remove(dataDir, { recursive: true });
      }
    });
  },
);

Deno.test(
  "broker:setup refuses a queue that exists with other arguments, which a passive check cannot see, against the broker",
  INTEGRATION,
  async () => {
    await withSetUpVhost(async (vhost, users) => {
      const api = managementApi();
      const queue = `/api/queues/${encodeURIComponent(vhost.name)}/${Queue.orderPlaced}`;
      await api("DELETE", queue);
      await api("PUT", queue, { durable: true });
      await assert.rejects(
        () => setUpBroker(api, { vhost: vhost.name, users }),
        /Cannot set up queue "order-placed" as it already exists with other arguments/,
      );
    });
  },
);

Deno.test(
  "broker:setup retires the earlier version's order-status, not while an earlier order service consumes it, against the broker",
  INTEGRATION,
  async () => {
    await withSetUpVhost(async (vhost, users) => {
      const api = managementApi();
      const path = (name: string) => `/api/queues/${encodeURIComponent(vhost.name)}/${name}`;
      const quorum = { durable: true, arguments: { "x-queue-type": "quorum" } };
      for (const name of retiredQueues(DEFAULT_RETRY_DELAYS_MS)) {
        await api("PUT", path(name), quorum);
      }
      // It still collects outcomes; what it holds is in inventory-reserved and inventory-failed too.
      await api("POST", `/api/exchanges/${encodeURIComponent(vhost.name)}/amq.default/publish`, {
        properties: {},
        routing_key: RETIRED_QUEUE,
        payload: "{}",
        payload_encoding: "string",
      });
      const connection = await amqp.connect(vhost.amqpUrl);
      try {
        const channel = await connection.createChannel();
        await channel.consume(RETIRED_QUEUE, () => {});
        // The management API counts consumers in its statistics, every few seconds.
        await waitFor(
          "the consumer in the management API",
          async () =>
            ((await api("GET", path(RETIRED_QUEUE))) as { consumers?: number }).consumers === 1,
        );
        await assert.rejects(
          () => setUpBroker(api, { vhost: vhost.name, users }),
          /an order service of an earlier version still consumes it/,
        );
      } finally {
        await connection.close();
      }
      await waitFor(
        "the consumer gone from the management API",
        async () =>
          ((await api("GET", path(RETIRED_QUEUE))) as { consumers?: number }).consumers === 0,
      );
      await setUpBroker(api, { vhost: vhost.name, users });
      const left = (await api("GET", `/api/queues/${encodeURIComponent(vhost.name)}`) as Array<
        { name: string }
      >).map((queue) => queue.name).filter((name) => name.startsWith(RETIRED_QUEUE));
      assert.deepEqual(left, []);
    });
  },
);

async function bearer(sub: string): Promise<Record<string, string>> {
  return { authorization: `Bearer ${await harnessToken(sub)}` };
}

async function api(
  url: string,
  sub: string | undefined,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown }> {
  const headers = { "content-type": "application/json", ...sub ? await bearer(sub) : {} };
  // fetch, not request(): these requests carry a student's token or none, never the admin's.
  const response = await fetch(url, { ...init, headers });
  return { status: response.status, body: await response.json() };
}

stackTest(
  "the system places, confirms, notifies and cancels with restricted broker users and bearer tokens, against the broker",
  { secure: true },
  async (stack) => {
    const order = stack.url("order");
    const notification = stack.url("notification");
    const body = JSON.stringify({ items: [{ sku: "burger", qty: 2 }] });
    assert.equal((await api(`${order}/order`, undefined, { method: "POST", body })).status, 401);
    const impostor = JSON.stringify({ user_id: "u2", items: [{ sku: "burger", qty: 1 }] });
    assert.equal(
      (await api(`${order}/order`, "u1", { method: "POST", body: impostor })).status,
      403,
    );

    const placed = await api(`${order}/order`, "u1", { method: "POST", body });
    assert.equal(placed.status, 202);
    const { order_id } = placed.body as { order_id: string };
    const status = async (sub: string) =>
      ((await api(`${order}/orders/${order_id}`, sub)).body as { status?: string }).status;
    await waitFor("the order to be confirmed", async () => await status("u1") === "CONFIRMED");
    const kinds = async (sub: string) =>
      ((await api(`${notification}/notifications?order_id=${order_id}`, sub)).body as Array<
        { kind: string }
      >).map((n) => n.kind);
    await waitFor("the confirmation", async () => (await kinds("u1")).length === 1);
    assert.deepEqual(await kinds("u2"), [], "another student sees none of it");
    assert.equal((await api(`${order}/orders/${order_id}`, "u2")).status, 404);
    const cancelPath = `${order}/orders/${order_id}/cancel`;
    assert.equal((await api(cancelPath, "u2", { method: "POST" })).status, 404);
    assert.equal((await api(cancelPath, "u1", { method: "POST" })).status, 202);
    await waitFor(
      "the cancellation notice",
      async () => (await kinds("u1")).join() === "order_confirmed,order_cancelled",
    );
    await waitFor("the stock to be given back", async () => {
      const stock = await (await fetch(`${stack.url("inventory")}/stock`)).json();
      return stock.burger === 500;
    });

    for (const name of SERVICES) {
      const service = stack.services[name]!;
      const connected = service.logs.find((record) => record.msg === "connected to broker");
      assert.equal(connected?.topology, "checked", `${name} could not declare, and checked`);
      assert.match(String(connected?.url), new RegExp(`-${name}:\\*\\*\\*@`));
      const errors = service.logs.filter((record) => record.level === "error");
      assert.deepEqual(errors, [], `${name} logged no error`);
    }
  },
);

Deno.test(
  "no broker password or token secret reaches a log line, an endpoint or an error, against the broker",
  INTEGRATION,
  async () => {
    const seen: string[] = [];
    const services: RunningService[] = [];
    let secrets: string[] = [];
    await withStack({ secure: true }, async (stack) => {
      secrets = [
        HARNESS_JWT_SECRET,
        ...SERVICES.map((name) =>
          decodeURIComponent(new URL(stack.envOf(name).AMQP_URL.split(",")[0]).password)
        ),
      ];
      const record = async (response: Promise<Response>) => {
        const answer = await response;
        seen.push(`${answer.status} ${[...answer.headers].join()} ${await answer.text()}`);
      };
      const body = JSON.stringify({ items: [{ sku: "fries", qty: 1 }] });
      const placed = await api(`${stack.url("order")}/order`, "u1", { method: "POST", body });
      const { order_id } = placed.body as { order_id: string };
      await waitFor(
        "the notification",
        async () =>
          ((await api(`${stack.url("notification")}/notifications`, "u1")).body as unknown[])
            .length === 1,
      );
      for (const name of SERVICES) {
        for (const path of ["/health", "/ready", "/metrics", "/nowhere"]) {
          await record(fetch(`${stack.url(name)}${path}`));
        }
      }
      await record(request(`${stack.url("order")}/orders/${order_id}`));
      await record(fetch(`${stack.url("order")}/order`, { method: "POST", body: "{" }));
      await record(request(`${stack.url("order")}/order`, { method: "POST", body: "{" }));

      // An order service whose broker is unreachable, and one given a malformed AMQP_URL list,
      // both holding the order user's password.
      const env = stack.envOf("order");
      const unreachable = new URL(env.AMQP_URL.split(",")[0]);
      unreachable.port = "1";
      const cut = await stack.startInstance("order", { AMQP_URL: unreachable.toString() });
      await waitFor(
        "the failed attempt",
        () => cut.logs.some((line) => line.msg === "cannot reach broker, retrying"),
      );
      await record(fetch(`${cut.url}/ready`));
      const malformed = `${unreachable},${unreachable.toString().replace("amqp:", "http:")}`;
      const refused = await startService("order", { env: { ...env, AMQP_URL: malformed } })
        .then((service) => service.stop().then(() => "started"), (error) => String(error));
      assert.match(refused, /AMQP_URL must be/);
      seen.push(refused);
      assert.ok(
        refused.includes(`:${REDACTED}@127.0.0.1:1`),
        `the URL is shown, redacted: ${refused}`,
      );
      services.push(...Object.values(stack.services), cut);
    });
    // Read after the stack closed, so that the services' last lines are in too.
    for (const service of services) {
      seen.push(...service.logs.map((line) => JSON.stringify(line)), ...service.stderr);
    }
    const everything = seen.join("\n");
    assert.ok(everything.includes(`:${REDACTED}@`), "URLs were logged, with their password hidden");
    assert.equal(secrets.length, 4);
    for (const secret of secrets) {
      assert.ok(secret.length >= 32, "a secret distinctive enough to grep for");
      assert.ok(!everything.includes(secret), `a secret leaked: ${secret.slice(0, 4)}…`);
    }
  },
);
