import assert from "node:assert/strict";
import {
  consumerOf,
  DEAD_LETTER_EXCHANGE,
  deadLetterQueue,
  declareTopology,
  DEFAULT_RETRY_DELAYS_MS,
  DELIVERY_LIMIT,
  ensureTopology,
  EventType,
  eventTypesOf,
  EXCHANGE,
  publisherOfType,
  Queue,
  QUEUES,
  RETIRED_QUEUE,
  retiredQueues,
  RETRY_EXCHANGE,
  retryQueue,
  SERVICE_ACCESS,
  SERVICES,
  TopologyMismatchError,
  TopologyMissingError,
} from "./topology.ts";
import {
  type FakeBrokerState,
  fakeBrokerState,
  FakeConnection,
  type ReplyCode,
} from "./testing/fake_channel.ts";

/** A fake broker that answers `replies` with their codes, and opens channels on it. */
function brokerAnswering(replies: Record<string, ReplyCode> = {}) {
  const broker: FakeBrokerState = fakeBrokerState((call) => replies[call]);
  const connection = new FakeConnection("amqp://localhost", broker);
  return { broker, openChannel: () => connection.createChannel() };
}

Deno.test("declareTopology() declares the exchanges, and each queue with its retries and DLQ", async () => {
  const { broker, openChannel } = brokerAnswering();
  await declareTopology(await openChannel(), { retryDelaysMs: [500, 2000] });
  for (const exchange of [EXCHANGE, DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE]) {
    assert.ok(broker.calls.includes(`assertExchange ${exchange}`), exchange);
  }
  for (const queue of QUEUES) {
    assert.deepEqual(broker.queueArguments.get(queue), {
      "x-queue-type": "quorum",
      "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
      "x-dead-letter-routing-key": queue,
      "x-dead-letter-strategy": "at-least-once",
      "x-overflow": "reject-publish",
    });
    for (const eventType of eventTypesOf(queue)) {
      assert.ok(broker.bindings.includes(`${queue} <- ${EXCHANGE} ${eventType}`));
    }
    const dlq = deadLetterQueue(queue);
    assert.deepEqual(broker.queueArguments.get(dlq), { "x-queue-type": "quorum" });
    assert.ok(broker.bindings.includes(`${dlq} <- ${DEAD_LETTER_EXCHANGE} ${queue}`));
    for (const delayMs of [500, 2000]) {
      const retry = retryQueue(queue, delayMs);
      assert.equal(broker.queueArguments.get(retry)?.["x-message-ttl"], delayMs);
      assert.equal(broker.queueArguments.get(retry)?.["x-dead-letter-exchange"], "");
      assert.equal(broker.queueArguments.get(retry)?.["x-dead-letter-routing-key"], queue);
      assert.ok(broker.bindings.includes(`${retry} <- ${RETRY_EXCHANGE} ${retry}`));
    }
  }
  assert.equal(broker.queueArguments.size, QUEUES.length * 4);
});

Deno.test("declareTopology() declares a retry queue per default delay when given none", async () => {
  const { broker, openChannel } = brokerAnswering();
  await declareTopology(await openChannel());
  const retries = [...broker.queueArguments.keys()].filter((name) => name.includes(".retry."));
  assert.equal(retries.length, QUEUES.length * DEFAULT_RETRY_DELAYS_MS.length);
  assert.ok(retries.includes("order-placed.retry.1s"));
});

Deno.test("retryQueue() names a delay in seconds when it is whole, else in milliseconds", () => {
  assert.equal(retryQueue(Queue.orderPlaced, 30_000), "order-placed.retry.30s");
  assert.equal(retryQueue(Queue.orderPlaced, 1500), "order-placed.retry.1500ms");
});

Deno.test("each queue is consumed by one service and each event type published by one", () => {
  for (const queue of QUEUES) {
    const consumers = SERVICES.filter((s) => SERVICE_ACCESS[s].consumes.includes(queue));
    assert.deepEqual(consumers, [consumerOf(queue)], queue);
  }
  for (const eventType of Object.values(EventType)) {
    const publishers = SERVICES.filter((s) => SERVICE_ACCESS[s].publishes.includes(eventType));
    assert.deepEqual(publishers, [publisherOfType(eventType)], eventType);
  }
  assert.equal(publisherOfType(EventType.OrderPlaced), "order");
  assert.equal(publisherOfType(EventType.InventoryReserved), "inventory");
  assert.equal(consumerOf(Queue.orderPlaced), "inventory");
  assert.equal(consumerOf(Queue.inventoryFailed), "order");
  assert.equal(consumerOf(Queue.orderCancelledNotifications), "notification");
  assert.deepEqual(SERVICE_ACCESS.notification.publishes, []);
});

Deno.test("no service consumes the events it publishes", () => {
  for (const service of SERVICES) {
    const { consumes, publishes } = SERVICE_ACCESS[service];
    for (const queue of consumes) {
      for (const eventType of eventTypesOf(queue)) {
        assert.ok(!publishes.includes(eventType), `${service} consumes its own ${eventType}`);
      }
    }
  }
});

Deno.test("retiredQueues() lists the retired queue first, then its retry queues and DLQ", () => {
  assert.deepEqual(retiredQueues([500, 2000]), [
    RETIRED_QUEUE,
    "order-status.retry.500ms",
    "order-status.retry.2s",
    "order-status.dlq",
  ]);
  assert.ok(!(QUEUES as readonly string[]).includes(RETIRED_QUEUE));
});

Deno.test("ensureTopology() declares where the user may", async () => {
  const { broker, openChannel } = brokerAnswering();
  assert.equal(await ensureTopology(openChannel), "declared");
  assert.ok(!broker.calls.some((call) => call.startsWith("check")));
});

Deno.test("ensureTopology() checks where the user may not declare", async () => {
  const { broker, openChannel } = brokerAnswering({ [`assertExchange ${EXCHANGE}`]: 403 });
  assert.equal(await ensureTopology(openChannel), "checked");
  assert.ok(broker.calls.includes(`checkExchange ${EXCHANGE}`));
  assert.ok(broker.calls.includes(`checkQueue ${Queue.orderPlaced}`));
});

Deno.test("ensureTopology() names what is missing where the user may not declare it", async () => {
  const { openChannel } = brokerAnswering({
    [`assertExchange ${EXCHANGE}`]: 403,
    [`checkQueue ${Queue.orderRejected}`]: 404,
  });
  await assert.rejects(
    ensureTopology(openChannel),
    TopologyMissingError,
    `Cannot use queue "${Queue.orderRejected}" as it does not exist`,
  );
});

Deno.test("ensureTopology() says which queue exists with other arguments", async () => {
  const { openChannel } = brokerAnswering({ [`assertQueue ${Queue.orderPlaced}`]: 406 });
  await assert.rejects(
    ensureTopology(openChannel),
    TopologyMismatchError,
    `Cannot declare queue "${Queue.orderPlaced}" as it already exists with other arguments`,
  );
});

/** A broker where the retired queue and its companions exist as `queues` says. */
function withRetired(queues: Record<string, { messageCount: number; consumerCount: number }>) {
  const { broker, openChannel } = brokerAnswering();
  broker.refuse = (call) => {
    const [method, name] = call.split(" ");
    return method === "checkQueue" && name.startsWith(RETIRED_QUEUE) && !broker.queues.has(name)
      ? 404
      : undefined;
  };
  for (const [name, depth] of Object.entries(queues)) broker.queues.set(name, depth);
  const warnings: string[] = [];
  const retiring = () =>
    ensureTopology(openChannel, {
      retryDelaysMs: [1000],
      retire: true,
      warn: (message) => warnings.push(message),
    });
  return { broker, warnings, retiring };
}

const EMPTY = { messageCount: 0, consumerCount: 0 };

Deno.test("ensureTopology({ retire }) deletes the retired queue, keeping a DLQ that holds", async () => {
  const { broker, warnings, retiring } = withRetired({
    [RETIRED_QUEUE]: { messageCount: 4, consumerCount: 0 },
    "order-status.retry.1s": EMPTY,
    "order-status.dlq": { messageCount: 1, consumerCount: 0 },
  });
  assert.equal(await retiring(), "declared");
  assert.deepEqual([...broker.queues.keys()], ["order-status.dlq"]);
  assert.deepEqual(warnings, []);
});

Deno.test("ensureTopology({ retire }) leaves a retired queue that is still consumed", async () => {
  const { broker, warnings, retiring } = withRetired({
    [RETIRED_QUEUE]: { messageCount: 0, consumerCount: 1 },
  });
  await retiring();
  assert.ok(broker.queues.has(RETIRED_QUEUE));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /is still consumed/);
});

Deno.test("ensureTopology({ retire }) waits for the retired retry queues to empty", async () => {
  const { broker, warnings, retiring } = withRetired({
    [RETIRED_QUEUE]: EMPTY,
    "order-status.retry.1s": { messageCount: 2, consumerCount: 0 },
  });
  await retiring();
  assert.ok(broker.queues.has(RETIRED_QUEUE));
  assert.match(warnings[0], /order-status\.retry\.1s: 2/);
});

Deno.test("ensureTopology({ retire }) does nothing when nothing was retired", async () => {
  const { broker, warnings, retiring } = withRetired({});
  assert.equal(await retiring(), "declared");
  assert.ok(!broker.calls.some((call) => call.startsWith("deleteQueue")));
  assert.deepEqual(warnings, []);
});
