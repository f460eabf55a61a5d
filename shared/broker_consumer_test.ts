import assert from "node:assert/strict";
import { ConsumerState, type ConsumerStateOptions } from "./broker_consumer.ts";
import type { BatchHandler, Delivery, Settlement } from "./delivery.ts";
import { Queue } from "./topology.ts";
import { eventually, FakeConnection } from "./testing/fake_channel.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

const QUEUE = Queue.orderPlaced;

/** A handler whose batches wait until the test settles them, one at a time. */
function heldHandler() {
  const batches: Array<{ deliveries: Delivery[]; settle(settlements: Settlement[]): void }> = [];
  const handler: BatchHandler = (deliveries) =>
    new Promise((resolve) => batches.push({ deliveries, settle: resolve }));
  return { batches, handler };
}

async function attached(
  handler: BatchHandler,
  options: Partial<ConsumerStateOptions> = {},
) {
  const { log, lines } = recordingLogger();
  const consumer = new ConsumerState(QUEUE, handler, {
    prefetch: 10,
    replyTimeoutMs: 1000,
    log,
    ...options,
  });
  const connection = new FakeConnection("amqp://localhost");
  await consumer.attach(connection);
  return { consumer, connection, channel: connection.channels[0], lines };
}

Deno.test("a consumer subscribes with its prefetch and hands deliveries over as data", async () => {
  const { batches, handler } = heldHandler();
  const { consumer, channel } = await attached(handler);
  assert.equal(channel.prefetchCount, 10);
  assert.deepEqual(channel.consumedQueues, [QUEUE]);
  assert.equal(consumer.attached, true);
  channel.deliver(QUEUE, '{"event_id":"e1"}', { type: "OrderPlaced", headers: { a: 1 } });
  const batch = await eventually("a batch", () => batches[0]);
  const [delivery] = batch.deliveries;
  assert.equal(new TextDecoder().decode(delivery.body), '{"event_id":"e1"}');
  assert.equal(delivery.type, "OrderPlaced");
  assert.equal(delivery.persistent, true);
  assert.deepEqual(delivery.headers, { a: 1 });
  batch.settle([{ action: "ack" }]);
  await consumer.stop();
});

Deno.test("a batch that is all acked or dead-lettered is settled by one multiple ack", async () => {
  const { batches, handler } = heldHandler();
  const { consumer, channel } = await attached(handler);
  const first = channel.deliver(QUEUE, "{}");
  await eventually("the first batch", () => batches[0]);
  const rest = [channel.deliver(QUEUE, "{}"), channel.deliver(QUEUE, "{}")];
  batches[0].settle([{ action: "ack" }]);
  const second = await eventually("the second batch", () => batches[1]);
  assert.equal(second.deliveries.length, 2);
  second.settle([{ action: "ack" }, { action: "dead-letter", reason: "bad" }]);
  await eventually("two settlements", () => channel.settlements.length === 2);
  assert.deepEqual(channel.settlements, [
    { action: "ack", deliveryTag: first.fields.deliveryTag, allUpTo: true },
    { action: "ack", deliveryTag: rest[1].fields.deliveryTag, allUpTo: true },
  ]);
  await consumer.stop();
});

Deno.test("a batch with a requeue is settled one delivery at a time", async () => {
  const { batches, handler } = heldHandler();
  const { consumer, channel } = await attached(handler);
  channel.deliver(QUEUE, "{}");
  await eventually("the first batch", () => batches[0]);
  const [a, b, c] = [0, 1, 2].map(() => channel.deliver(QUEUE, "{}"));
  batches[0].settle([{ action: "ack" }]);
  const second = await eventually("the second batch", () => batches[1]);
  second.settle([
    { action: "ack" },
    { action: "requeue", error: "busy" },
    { action: "dead-letter", reason: "bad" },
  ]);
  await eventually("four settlements", () => channel.settlements.length === 4);
  assert.deepEqual(channel.settlements.slice(1), [
    { action: "ack", deliveryTag: a.fields.deliveryTag, allUpTo: false },
    { action: "nack", deliveryTag: b.fields.deliveryTag, allUpTo: false, requeue: true },
    { action: "ack", deliveryTag: c.fields.deliveryTag, allUpTo: false },
  ]);
  await consumer.stop();
});

Deno.test("a batch whose handler throws is requeued", async () => {
  const { consumer, channel, lines } = await attached(() => Promise.reject(new Error("boom")));
  const message = channel.deliver(QUEUE, "{}");
  await eventually("a settlement", () => channel.settlements.length === 1);
  assert.deepEqual(channel.settlements, [
    { action: "nack", deliveryTag: message.fields.deliveryTag, allUpTo: false, requeue: true },
  ]);
  assert.ok(lines.includes("error batch handler failed, requeueing"));
  await consumer.stop();
});

Deno.test("a batch takes at most half the prefetch", async () => {
  const { batches, handler } = heldHandler();
  const { consumer, channel } = await attached(handler, { prefetch: 4 });
  channel.deliver(QUEUE, "{}");
  await eventually("the first batch", () => batches[0]);
  for (let i = 0; i < 3; i++) channel.deliver(QUEUE, "{}");
  batches[0].settle([{ action: "ack" }]);
  const second = await eventually("the second batch", () => batches[1]);
  assert.equal(second.deliveries.length, 2);
  second.settle([{ action: "ack" }, { action: "ack" }]);
  const third = await eventually("the third batch", () => batches[2]);
  assert.equal(third.deliveries.length, 1);
  third.settle([{ action: "ack" }]);
  await consumer.stop();
});

Deno.test("a consumer that receives nothing while its queue holds messages attaches again", async () => {
  const { consumer, connection, channel, lines } = await attached(() => Promise.resolve([]), {
    stallMs: 20,
    stallCheckIntervalMs: 10,
  });
  connection.broker.queues.set(QUEUE, { messageCount: 3, consumerCount: 1 });
  const fresh = await eventually("a new channel", () => connection.channels[1]);
  await eventually("a subscription on it", () => fresh.consumedQueues.length === 1);
  assert.equal(channel.closed, true);
  assert.equal(connection.closed, false);
  assert.equal(consumer.attached, true);
  assert.ok(
    lines.includes(
      "warn consumer receives nothing although its queue holds messages, attaching again",
    ),
  );
  await consumer.stop();
});

Deno.test("a consumer whose queue counts no consumer twice in a row leaves the node", async () => {
  const { consumer, connection, lines } = await attached(() => Promise.resolve([]), {
    stallMs: 20,
    stallCheckIntervalMs: 10,
  });
  // What a node cut off from the queue's leader answers for it.
  connection.broker.queues.set(QUEUE, { messageCount: 0, consumerCount: 0 });
  await eventually("the connection closed", () => connection.closed);
  assert.ok(lines.includes("warn consumed queue counts no consumer, leaving this node"));
  assert.equal(
    connection.broker.calls.filter((call) => call === `checkQueue ${QUEUE}`).length,
    2,
  );
  await consumer.stop();
});

Deno.test("a consumer whose queue is empty stays on its channel", async () => {
  const { consumer, connection, channel } = await attached(() => Promise.resolve([]), {
    stallMs: 20,
    stallCheckIntervalMs: 10,
  });
  await eventually(
    "three looks at the queue",
    () => connection.broker.calls.filter((call) => call === `checkQueue ${QUEUE}`).length >= 3,
  );
  assert.equal(connection.channels.length, 1);
  assert.equal(channel.closed, false);
  await consumer.stop();
});

Deno.test("pause() cancels the subscription and resume() subscribes again", async () => {
  const { consumer, channel, connection } = await attached(() => Promise.resolve([]));
  consumer.pause();
  await eventually("the cancel", () => channel.consumedQueues.length === 0);
  assert.equal(consumer.attached, true, "paused on purpose counts as attached");
  consumer.resume();
  await eventually("the new subscription", () => channel.consumedQueues.length === 1);
  assert.equal(connection.channels.length, 1);
  await consumer.stop();
  assert.equal(channel.closed, true);
  assert.equal(connection.closed, false);
});

Deno.test("a consumer the broker cancels closes the connection", async () => {
  const { consumer, channel, connection, lines } = await attached(() => Promise.resolve([]));
  channel.cancelByBroker(QUEUE);
  assert.equal(connection.closed, true);
  assert.ok(lines.includes("warn broker cancelled consumer, reconnecting"));
  await consumer.stop();
});

Deno.test("detach() aborts the batch in hand's channelLost and forgets the channel", async () => {
  let lost: AbortSignal | undefined;
  const { batches, handler } = heldHandler();
  const { consumer, channel } = await attached((batch, channelLost) => {
    lost = channelLost;
    return handler(batch, channelLost);
  });
  channel.deliver(QUEUE, "{}");
  await eventually("a batch", () => batches[0]);
  consumer.detach();
  assert.equal(lost?.aborted, true);
  assert.equal(consumer.attached, false);
  batches[0].settle([{ action: "ack" }]);
  await consumer.stop();
});
