/**
 * Outages of a database under load, against the real broker: on PostgreSQL, one service's
 * connection is cut by a TCP proxy for longer than all retry delays together; on SQLite, the disk
 * under every service fills up. Afterwards every order must be CONFIRMED, every `.dlq` empty, and
 * no message may have spent a retry: the services paused and resumed by themselves.
 */
import assert from "node:assert/strict";
import { sleep, waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { deadLetterDepths } from "../lib/broker_probes.ts";
import { getJson, orderStatus, postOrder, request, waitReady } from "../lib/http_probes.ts";
import { createVhost } from "../ops/management_api.ts";
import { keepDeadLettering } from "../lib/broker_check.ts";
import { type ServiceName, SERVICES } from "../lib/service_process.ts";
import { INTEGRATION, type Stack, withStack } from "../lib/stack.ts";
import { ON_POSTGRES } from "../lib/on_postgres.ts";
import { withProxiedDatabase } from "../lib/proxied_database.ts";
import { streamOrders } from "../lib/order_stream.ts";
import { startTcpProxy, type TcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import { mountTmpfs, tmpfsUnavailable } from "../../shared/testing/tmpfs.ts";
import { PAUSED_MSG, RESUMED_MSG } from "../../shared/outage.ts";
import { newId } from "../../shared/ids.ts";
import { type Broker, connectBroker, type Consumer } from "../../shared/broker.ts";
import { startConsumer } from "../../shared/consumer.ts";
import { orderConfirmed, orderConfirmedSchema } from "../../shared/events.ts";
import { openStore, type Store } from "../../shared/store.ts";
import { watchOutages } from "../../shared/outage.ts";
import { recordingLogger } from "../../shared/testing/recording_logger.ts";
import { type BrokerTools, connectBrokerTools } from "../ops/broker_tools.ts";
import { deadLetterQueue, EventType, EXCHANGE, Queue } from "../../shared/topology.ts";
import { handleOrderDecision } from "../../notification/handle_order_decision.ts";
import { NOTIFICATION_MIGRATIONS } from "../../notification/notifications.ts";

/** Short retries: the outage lasts five times as long as all of them together (600 ms). */
const RETRY_DELAYS = "100ms,200ms,300ms";
const OUTAGE_MS = 3000;

/** An outage a test causes and ends. */
interface Outage {
  /** The services that must pause, once. */
  affected: readonly ServiceName[];
  /** The others may pause too, as on a disk they share; else they must not. @default {false} */
  othersMayPause?: boolean;
  begin(): Promise<void> | void;
  end(): Promise<void> | void;
  /**
   * Asserts what must hold while it lasts, beyond the /ready of the affected services; `follow`
   * adds an order placed meanwhile to those that must end CONFIRMED. @default {nothing}
   */
  during?(follow: (orderId: string) => void): Promise<void>;
}

/**
 * Streams 10 orders a second for 6 s through `outage`, which begins once orders flow and lasts
 * {@linkcode OUTAGE_MS}, and asserts what must hold during it and after.
 */
async function throughOutage(stack: Stack, outage: Outage): Promise<void> {
  const accepted: string[] = [];
  const unanswered: string[] = [];
  const stream = streamOrders(
    stack,
    { seconds: 6, rate: 10, label: "outage" },
    (placed) =>
      placed.orderId ? accepted.push(placed.orderId) : unanswered.push(placed.error ?? ""),
  );
  await waitFor("orders to flow", () => accepted.length >= 5);
  const acceptedBefore = accepted.length;
  await outage.begin();
  const began = Date.now();

  for (const name of outage.affected) {
    const ready = await waitFor(`${name} to say on /ready that it paused`, async () => {
      const { status, body } = await getJson(`${stack.url(name)}/ready`);
      return status === 503 && /^paused: /.test(body.failed.database ?? "") && body;
    });
    assert.equal(ready.status, "not ready");
  }
  await outage.during?.((orderId) => accepted.push(orderId));

  await sleep(began + OUTAGE_MS - Date.now());
  const acceptedDuring = accepted.length - acceptedBefore;
  await outage.end();
  const ended = Date.now();

  await stream;
  assert.deepEqual(unanswered, [], "every order got its 202, if need be after a 503");
  await waitFor("every order to be CONFIRMED", async () => {
    const statuses = await Promise.all(accepted.map((id) => orderStatus(stack, id)));
    return statuses.every((status) => status === "CONFIRMED");
  }, { timeoutMs: 30_000, intervalMs: 250 });
  await waitReady(stack);

  const depths = await deadLetterDepths(stack);
  assert.ok(Object.values(depths).every((depth) => depth === 0), JSON.stringify(depths));
  const resumedAfterMs: number[] = [];
  for (const name of SERVICES) {
    const logs = stack.services[name]!.logs;
    const count = (msg: string) => logs.filter((line) => line.msg === msg).length;
    assert.equal(count("handling failed, retrying later"), 0, `${name} spent no retry`);
    const pauses = [count(PAUSED_MSG), count(RESUMED_MSG)];
    if (outage.affected.includes(name)) assert.deepEqual(pauses, [1, 1], `${name}'s pauses`);
    else if (outage.othersMayPause) assert.ok(pauses[0] <= 1 && pauses[0] === pauses[1], name);
    else assert.deepEqual(pauses, [0, 0], `${name}'s pauses`);
    const resumed = logs.find((line) => line.msg === RESUMED_MSG);
    if (resumed) resumedAfterMs.push(Date.parse(String(resumed.time)) - ended);
  }
  for (const name of outage.affected) {
    const metrics = await (await request(`${stack.url(name)}/metrics`)).text();
    assert.match(metrics, /^campus_food_pauses_total\{cause="database"\} 1$/m);
    const paused = /^campus_food_paused_seconds_total\{cause="database"\} ([\d.e+-]+)$/m
      .exec(metrics);
    assert.ok(Number(paused?.[1]) > 1, `${name} paused for ${paused?.[1]} s`);
  }
  console.log(
    `  ${outage.affected.join(", ")}: ${accepted.length} orders, ${acceptedDuring} accepted ` +
      `during the ${OUTAGE_MS} ms outage; resumed ${resumedAfterMs.join(", ")} ms after it ended`,
  );
}

/**
 * While the order service's database is out: `POST /order` answers 503 with `Retry-After` and a
 * JSON error. An order it accepted all the same is passed to `follow`.
 */
async function assertPostRefused(stack: Stack, follow: (orderId: string) => void): Promise<void> {
  const refused = await waitFor("POST /order to answer 503", async () => {
    const response = await postOrder(stack.url("order"), {
      user_id: "refused",
      items: [{ sku: "burger", qty: 1 }],
    });
    const body = await response.json();
    if (response.status === 202) follow(body.order_id);
    return response.status === 503 && { response, body };
  });
  assert.match(refused.response.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
  assert.match(refused.response.headers.get("content-type") ?? "", /^application\/json/);
  assert.equal(typeof refused.body.error, "string");
}

for (const service of SERVICES) {
  Deno.test(
    `${service}'s PostgreSQL cut off for ${OUTAGE_MS} ms under load pauses it once, and every order ends CONFIRMED with every .dlq empty, against the broker`,
    ON_POSTGRES,
    async () => {
      await withProxiedDatabase(async ({ url, directUrl, proxy }) => {
        await withStack({
          env: { DATABASE_URL: directUrl, RETRY_DELAYS },
          serviceEnv: { [service]: { DATABASE_URL: url } },
        }, (stack) =>
          throughOutage(stack, {
            affected: [service],
            begin: () => proxy.cut(),
            end: () => proxy.restore(),
            async during(follow) {
              if (service !== "order") return;
              await assertPostRefused(stack, follow);
              const get = await getJson(`${stack.url("order")}/orders/${newId()}`);
              assert.equal(get.status, 503);
              assert.equal(typeof get.body.error, "string");
            },
          }));
      });
    },
  );
}

Deno.test(
  "a service started while its PostgreSQL cannot be reached waits for it, and takes orders once it answers, against the broker",
  ON_POSTGRES,
  async () => {
    await withProxiedDatabase(async ({ url, directUrl, proxy }) => {
      proxy.cut();
      await withStack({
        env: { DATABASE_URL: directUrl },
        services: ["inventory", "notification"],
      }, async (stack) => {
        // It listens only once its database answered: start() resolves then, or rejects if it exits.
        const starting = stack.start("order", { DATABASE_URL: url });
        // A start that fails (the service exited) is reported where it is awaited, below; until
        // then its rejection must not end the test before the stack and the database are cleaned up.
        let exited = false;
        starting.catch(() => exited = true);
        await waitFor(
          "order to try its database again",
          () => exited || proxy.refused >= 3,
          { timeoutMs: 15_000 },
        );
        proxy.restore();
        const order = await starting;
        const messages = order.logs.map((line) => line.msg);
        assert.equal(
          messages.filter((msg) => msg === "cannot reach the database, retrying").length,
          1,
        );
        assert.ok(messages.includes("reached the database"), JSON.stringify(messages));
        await waitReady(stack);
        const response = await postOrder(order.url, {
          user_id: "u1",
          items: [{ sku: "burger", qty: 1 }],
        });
        assert.equal(response.status, 202);
        const { order_id } = await response.json();
        await waitFor(
          "the order to be confirmed",
          async () => await orderStatus(stack, order_id) === "CONFIRMED",
        );
      });
    });
  },
);

Deno.test(
  `a full disk under every service's SQLite for ${OUTAGE_MS} ms under load pauses them, and every order ends CONFIRMED with every .dlq empty, against the broker`,
  { ...INTEGRATION, ignore: (await tmpfsUnavailable()) !== undefined },
  async () => {
    const disk = await mountTmpfs(32);
    try {
      await withStack(
        { env: { DATA_DIR: disk.path, RETRY_DELAYS } },
        (stack) =>
          throughOutage(stack, {
            // The order API writes at every POST; the others may have nothing to write meanwhile.
            affected: ["order"],
            othersMayPause: true,
            begin: () => disk.fill(),
            end: () => disk.free(),
            // Reads still work on a full disk: only the POST is refused.
            during: (follow) => assertPostRefused(stack, follow),
          }),
      );
    } finally {
      await disk.unmount();
    }
  },
);

/** A notification consumer of its own against the broker, over a store `wrap` makes unreliable. */
interface ConsumerRig {
  broker: Broker;
  /** Queue depths in the rig's vhost, straight to the broker (never through the proxy). */
  tools: BrokerTools;
  lines: string[];
  consumer: Consumer;
  /** Publishes `body` to the consumed queue as it is. */
  publish(body: string, messageId: string): Promise<void>;
}

/**
 * Runs `fn` with notification's consumer of `order-confirmed` in a vhost of its own, reaching the
 * broker through `proxy` if given, over a SQLite store that `wrap` turns into the store it uses.
 */
async function withConsumer(
  options: { wrap: (real: Store) => Store; proxy?: TcpProxy },
  fn: (rig: ConsumerRig) => Promise<void>,
): Promise<void> {
  await keepDeadLettering("a test vhost");
  const vhost = await createVhost();
  const dir = await Deno.makeTempDir({ prefix: "outage_consumer_test_" });
  const { log, lines } = recordingLogger();
  const amqpUrl = options.proxy ? viaProxy(vhost.amqpUrl, options.proxy) : vhost.amqpUrl;
  const broker = connectBroker(amqpUrl, { log, connectionName: "outage-consumer-test" });
  const tools = connectBrokerTools(vhost.amqpUrl);
  const real = await openStore(dir, "notification", { migrations: NOTIFICATION_MIGRATIONS });
  const store = options.wrap(real);
  const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
  try {
    await waitFor("the broker connection", () => broker.connected);
    const consumer = startConsumer(broker, store, {
      queue: Queue.orderConfirmed,
      schema: orderConfirmedSchema,
      handle: handleOrderDecision(log),
      log,
      outages,
    });
    const publish = (body: string, messageId: string) =>
      broker.publish([{
        exchange: EXCHANGE,
        routingKey: EventType.OrderConfirmed,
        body,
        messageId,
        type: EventType.OrderConfirmed,
      }]);
    await fn({ broker, tools, lines, consumer, publish });
  } finally {
    await outages.stop();
    await tools.close();
    await broker.close();
    await real.close();
    await Deno.remove(dir, { recursive: true });
    await vhost.delete();
  }
}

function confirmed(): { body: string; eventId: string; orderId: string } {
  const event = orderConfirmed({
    order_id: newId(),
    user_id: "u1",
    items: [{ sku: "burger", qty: 1 }],
  });
  return { body: JSON.stringify(event), eventId: event.event_id, orderId: event.order_id };
}

/** On SQLite, an I/O error is the outage that stands for a connection lost to PostgreSQL. */
const LOST = "disk I/O error";

Deno.test(
  "startConsumer() sends the notification of a COMMIT that was applied but lost with its connection, once, against the broker",
  INTEGRATION,
  async () => {
    // The first transaction commits, then fails as one whose COMMIT was lost would.
    let lost = false;
    const wrap = (real: Store): Store => ({
      ...real,
      async transaction(fn, options) {
        const result = await real.transaction(fn, options);
        if (lost) return result;
        lost = true;
        throw new Error(LOST);
      },
    });
    await withConsumer({ wrap }, async ({ tools, lines, consumer, publish }) => {
      const event = confirmed();
      await publish(event.body, event.eventId);
      const sent = (line: string) => line.startsWith(`info order ${event.orderId} `);
      await waitFor("the notification to be sent", () => lines.some(sent));
      await consumer.stop();
      assert.equal(lost, true, "the COMMIT was lost");
      assert.ok(lines.includes(`warn ${PAUSED_MSG}`), "the lost COMMIT paused the consumer");
      assert.equal(lines.filter(sent).length, 1);
      assert.ok(!lines.includes("info skipped duplicate"), lines.join("\n"));
      assert.equal(await tools.queueDepth(Queue.orderConfirmed), 0);
    });
  },
);

Deno.test(
  "startConsumer() parks a poison message held through an outage once, though its channel was lost meanwhile, against the broker",
  INTEGRATION,
  async () => {
    // The first transaction takes a while, so that the next deliveries make one batch; every one
    // after it fails as a database that is out does, until `failing` is cleared.
    let calls = 0;
    let failing = false;
    const wrap = (real: Store): Store => ({
      ...real,
      async transaction(fn, options) {
        if (calls++ === 0) {
          await sleep(300);
          const result = await real.transaction(fn, options);
          failing = true;
          return result;
        }
        if (failing) throw new Error(LOST);
        return await real.transaction(fn, options);
      },
      probe: () => failing ? Promise.reject(new Error(LOST)) : real.probe(),
    });
    const proxy = startTcpProxy(brokerTarget());
    try {
      await withConsumer({ wrap, proxy }, async ({ broker, tools, lines, consumer, publish }) => {
        const [first, held] = [confirmed(), confirmed()];
        await publish(first.body, first.eventId);
        await publish(held.body, held.eventId);
        await publish("not json", "poison-held");
        await waitFor("the consumer to pause", () => lines.includes(`warn ${PAUSED_MSG}`));
        // The broker connection drops while the batch of `held` and the poison is held.
        proxy.cut();
        await waitFor("the connection to drop", () => !broker.connected);
        proxy.restore();
        await waitFor("the connection to return", () => broker.connected);
        failing = false;
        await waitFor(
          "the redelivered copy of the held event",
          () => lines.includes("info skipped duplicate"),
        );
        await consumer.stop();
        const parked = lines.filter((line) => line === "warn dead-lettered message");
        assert.equal(parked.length, 1, lines.join("\n"));
        assert.equal(await tools.queueDepth(deadLetterQueue(Queue.orderConfirmed)), 1);
        const sent = (line: string) => line.startsWith(`info order ${held.orderId} `);
        assert.equal(lines.filter(sent).length, 1);
      });
    } finally {
      proxy.close();
    }
  },
);
