import assert from "node:assert/strict";
import { copyOf, type OutgoingMessage, Publisher } from "./broker_publisher.ts";
import type { BrokerLink } from "./broker_connection.ts";
import { BrokerTimeoutError } from "./broker_deadline.ts";
import { eventually, FakeConnection } from "./testing/fake_channel.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { testDelivery } from "./testing/fake_broker.ts";

/** A link over a fake connection, which records whether it was given up. */
function fakeLink(
  connection = new FakeConnection("amqp://localhost"),
): BrokerLink & { connection: FakeConnection; blocked: boolean; abandoned: boolean } {
  const link = {
    connection,
    node: "localhost:5672",
    blocked: false,
    abandoned: false,
    abandon() {
      link.abandoned = true;
    },
  };
  return link;
}

function message(messageId: string): OutgoingMessage {
  return { exchange: "campus-food", routingKey: "OrderPlaced", body: "{}", messageId };
}

async function openPublisher(link = fakeLink(), replyTimeoutMs = 5000) {
  const { log, lines } = recordingLogger();
  const publisher = await Publisher.open(link, { log, replyTimeoutMs, user: "campus-food-order" });
  return { publisher, link, lines, connection: link.connection };
}

Deno.test("publish() resolves only once the broker confirmed every message", async () => {
  const link = fakeLink();
  link.connection.confirmMode = "hold";
  const { publisher, connection } = await openPublisher(link);
  const [channel] = connection.channels;
  let confirmed = false;
  const publishing = publisher.publish([message("m1"), message("m2")]).then(() => confirmed = true);
  await eventually("both publishes", () => channel.published.length === 2);
  assert.equal(confirmed, false);
  channel.releaseHeld();
  await publishing;
  assert.equal(confirmed, true);
  const { options } = channel.published[0];
  assert.equal(options.persistent, true);
  assert.equal(options.messageId, "m1");
  assert.equal(options.userId, "campus-food-order");
  assert.equal(options.contentType, "application/json");
});

Deno.test("publish() rejects a nacked message and goes on on a new channel", async () => {
  const link = fakeLink();
  link.connection.confirmMode = "nack";
  const { publisher, connection, lines } = await openPublisher(link);
  const [nacked] = connection.channels;
  link.connection.confirmMode = "ack";
  await assert.rejects(publisher.publish([message("m1")]), /Broker did not confirm the publish/);
  await eventually("the nacked channel's close", () => nacked.closed);
  assert.ok(lines.includes("warn broker nacked a publish, publishing on a new channel"));
  await publisher.publish([message("m2")]);
  assert.equal(connection.channels.length, 2);
  assert.deepEqual(connection.channels[1].published.map((p) => p.options.messageId), ["m2"]);
  assert.equal(link.abandoned, false);
  assert.equal(connection.closed, false);
});

Deno.test("publish() rejects when its channel is closed", async () => {
  const { publisher, connection } = await openPublisher();
  connection.drop();
  await assert.rejects(
    publisher.publish([message("m1")]),
    /Cannot publish as the channel is closed/,
  );
});

Deno.test("publish() gives the connection up when no confirm comes in time", async () => {
  const link = fakeLink();
  link.connection.confirmMode = "hold";
  const { publisher } = await openPublisher(link, 50);
  await assert.rejects(publisher.publish([message("m1")]), BrokerTimeoutError);
  assert.equal(link.abandoned, true);
});

Deno.test("publish() keeps the connection while the broker blocks publishing", async () => {
  const link = fakeLink();
  link.connection.confirmMode = "hold";
  link.blocked = true;
  const { publisher } = await openPublisher(link, 50);
  await assert.rejects(publisher.publish([message("m1")]), BrokerTimeoutError);
  assert.equal(link.abandoned, false);
});

Deno.test("a channel the broker closes closes the connection", async () => {
  const { connection } = await openPublisher();
  connection.channels[0].closeByBroker(new Error("PRECONDITION_FAILED - unknown delivery tag"));
  assert.equal(connection.closed, true);
});

Deno.test("copyOf() drops CC, BCC and x-delivery-count and adds the given headers", () => {
  const delivery = testDelivery({ event_id: "e1" }, {
    type: "OrderPlaced",
    headers: {
      CC: ["inventory-failed"],
      BCC: ["order-confirmed"],
      "x-delivery-count": 3,
      "x-trace": "kept",
      "x-stale": "dropped on request",
    },
  });
  const copy = copyOf(delivery, {
    exchange: "campus-food.dlx",
    routingKey: "order-placed",
    headers: { "x-rejected-reason": "bad" },
  }, { dropHeaders: ["x-stale"], userId: "campus-food-operator" });
  assert.deepEqual(copy.headers, { "x-trace": "kept", "x-rejected-reason": "bad" });
  assert.equal(copy.exchange, "campus-food.dlx");
  assert.equal(copy.routingKey, "order-placed");
  assert.equal(copy.messageId, "e1");
  assert.equal(copy.type, "OrderPlaced");
  assert.equal(copy.userId, "campus-food-operator");
  assert.equal(copy.body, delivery.body);
  assert.deepEqual(Object.keys(delivery.headers).length, 5, "the delivery itself is untouched");
});
