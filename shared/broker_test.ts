import assert from "node:assert/strict";
import { type Broker, connectBroker } from "./broker.ts";
import type { Delivery, Settlement } from "./delivery.ts";
import { EXCHANGE, Queue } from "./topology.ts";
import { eventually, FakeAmqp, type FakeChannel } from "./testing/fake_channel.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

/** A broker over a fake amqplib, and the confirm channel it publishes on once connected. */
async function fakeConnected(): Promise<{ amqp: FakeAmqp; broker: Broker; connected: string[] }> {
  const amqp = new FakeAmqp();
  const connected: string[] = [];
  const broker = connectBroker("amqp://campus-food-order:pw@a:5672/", {
    log: recordingLogger().log,
    connectionName: "test",
    replyTimeoutMs: 1000,
    connect: amqp.connect,
  });
  broker.onConnect(() => connected.push("connected"));
  await eventually("a connection", () => broker.connected);
  return { amqp, broker, connected };
}

/** The channel that carries the publishes: the one whose publishes were recorded. */
function publishingChannel(amqp: FakeAmqp): FakeChannel {
  const channel = amqp.connections[0].channels.find((each) => each.published.length > 0);
  if (!channel) throw new Error("nothing was published");
  return channel;
}

Deno.test("connectBroker() refuses to publish before it is connected", async () => {
  const amqp = new FakeAmqp({ refuse: () => new Error("ECONNREFUSED") });
  const broker = connectBroker("amqp://a:5672/", {
    log: recordingLogger().log,
    connectionName: "test",
    connect: amqp.connect,
  });
  await assert.rejects(broker.publish([]), /not connected/);
  await eventually("an attempt", () => amqp.attempts.length > 0);
  assert.equal(broker.connected, false);
  await broker.close();
});

Deno.test("connectBroker() publishes as its URL's user once connected, and says so", async () => {
  const { amqp, broker, connected } = await fakeConnected();
  assert.equal(broker.user, "campus-food-order");
  assert.deepEqual(connected, ["connected"]);
  await broker.publish([{
    exchange: EXCHANGE,
    routingKey: "OrderPlaced",
    body: '{"event_id":"e1"}',
    messageId: "e1",
    type: "OrderPlaced",
  }]);
  const [published] = publishingChannel(amqp).published;
  assert.equal(published.exchange, EXCHANGE);
  assert.equal(published.routingKey, "OrderPlaced");
  assert.equal(published.options.userId, "campus-food-order");
  assert.equal(published.options.persistent, true);
  await broker.close();
});

Deno.test("connectBroker() hands a consumer its deliveries and settles them on its channel", async () => {
  const { amqp, broker } = await fakeConnected();
  const batches: Delivery[][] = [];
  const consumer = broker.consume(Queue.orderPlaced, (deliveries) => {
    batches.push(deliveries);
    return Promise.resolve(deliveries.map((): Settlement => ({ action: "ack" })));
  });
  const channel = await eventually(
    "the consumer's channel",
    () =>
      amqp.connections[0].channels.find((each) => each.consumedQueues.includes(Queue.orderPlaced)),
  );
  assert.deepEqual(broker.unattachedQueues, []);
  channel.deliver(Queue.orderPlaced, '{"event_id":"e1"}', { type: "OrderPlaced" });
  await eventually("the ack", () => channel.settlements.length > 0);
  assert.equal(new TextDecoder().decode(batches[0][0].body), '{"event_id":"e1"}');
  assert.equal(channel.settlements[0].action, "ack");
  await consumer.stop();
  await broker.close();
});

Deno.test("connectBroker() forwards a delivery without CC, BCC or its delivery count", async () => {
  const { amqp, broker } = await fakeConnected();
  const delivery: Delivery = {
    body: new TextEncoder().encode('{"event_id":"e1"}'),
    exchange: EXCHANGE,
    routingKey: "OrderPlaced",
    messageId: "e1",
    type: "OrderPlaced",
    persistent: true,
    redelivered: false,
    headers: { CC: ["order-cancelled"], BCC: ["x"], "x-delivery-count": 3, kept: "yes" },
  };
  await broker.forward(delivery, { exchange: "campus-food.retry", routingKey: "q.retry" }, {
    "x-retry-attempt": 1,
  });
  const [published] = publishingChannel(amqp).published;
  assert.equal(published.exchange, "campus-food.retry");
  assert.deepEqual(published.options.headers, { kept: "yes", "x-retry-attempt": 1 });
  await broker.close();
});
