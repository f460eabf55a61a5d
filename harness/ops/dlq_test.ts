/**
 * `deno task dlq` and `deno task dlq:replay` against the broker: listing loses and reorders
 * nothing, replay republishes with confirms, removes only what it replayed, and twice changes
 * nothing twice.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { notificationCount, placeOrder } from "../lib/http_probes.ts";
import { stackTest } from "../lib/stack.ts";
import { listDeadLetters, replayDeadLetters } from "./dlq.ts";
import { publishOrderPlaced, waitForDepth } from "../lib/broker_probes.ts";
import { DEAD_LETTER_EXCHANGE, deadLetterQueue, EventType, Queue } from "../../shared/topology.ts";

const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

stackTest(
  "listDeadLetters() shows reason, attempts and order id and leaves the DLQ as it was, against the broker",
  { services: ["inventory"] },
  async (stack) => {
    const bodies = ["not json", "[1,2]", '{"invalid":"json","no":"order field"}'];
    for (const [i, body] of bodies.entries()) {
      await publishOrderPlaced(stack, body, `poison-${i}`);
    }
    const dlq = deadLetterQueue(Queue.orderPlaced);
    await waitForDepth(stack, dlq, 3);
    const first = await listDeadLetters(stack.tools, { queues: [Queue.orderPlaced] });
    assert.deepEqual(first.map((l) => l.message_id), ["poison-0", "poison-1", "poison-2"]);
    assert.match(first[0].reason, /not JSON/);
    assert.match(first[1].reason, /not a JSON object but an array/);
    assert.equal(first[2].preview, JSON.stringify(bodies[2]));
    assert.equal(first[0].routing_key, EventType.OrderPlaced);
    assert.ok(first.every((l) => l.attempts === 1 && l.first_failed_at !== ""));
    const second = await listDeadLetters(stack.tools, { queues: [Queue.orderPlaced] });
    assert.deepEqual(
      second.map((l) => l.message_id),
      first.map((l) => l.message_id),
      "same order",
    );
    assert.equal(await stack.tools.queueDepth(dlq), 3);
  },
);

stackTest(
  "replayDeadLetters() delivers a fixed message once and a second replay changes nothing, against the broker",
  {
    env: { RETRY_DELAYS: "50ms" },
    serviceEnv: { notification: { FAULT_TRANSIENT_RATE: "1" } },
  },
  async (stack) => {
    const orderIds = [await placeOrder(stack, BURGER), await placeOrder(stack, BURGER)];
    const dlq = deadLetterQueue(Queue.orderConfirmed);
    await waitForDepth(stack, dlq, 2);
    const [parked] = await listDeadLetters(stack.tools, { queues: [Queue.orderConfirmed] });
    assert.equal(parked.attempts, 2);
    assert.match(parked.reason, /Injected transient fault/);

    // The fix: notification runs again without the fault.
    await stack.stop("notification");
    await stack.start("notification", { FAULT_TRANSIENT_RATE: "0" });
    const chosen = await replayDeadLetters(stack, { messageIds: [parked.message_id] });
    assert.deepEqual(chosen.map((l) => l.order_id), [parked.order_id]);
    assert.equal(chosen[0].routing_key, EventType.OrderConfirmed);
    await waitFor(
      "the replayed notification",
      async () => await notificationCount(stack, parked.order_id) === 1,
    );
    assert.equal(await stack.tools.queueDepth(dlq), 1, "the other message stays");

    const rest = await replayDeadLetters(stack, { queues: [Queue.orderConfirmed] });
    assert.equal(rest.length, 1);
    await waitFor(
      "every notification",
      async () =>
        (await Promise.all(orderIds.map((id) => notificationCount(stack, id)))).every((n) =>
          n === 1
        ),
    );
    assert.deepEqual(await replayDeadLetters(stack), [], "nothing left to replay");
    assert.equal(await stack.tools.queueDepth(dlq), 0);
  },
);

stackTest(
  "replayDeadLetters() of an event that was handled before is absorbed by the inbox, against the broker",
  {},
  async (stack) => {
    const tap = await stack.tools.tap([EventType.OrderConfirmed]);
    const orderId = await placeOrder(stack, BURGER);
    await waitFor("the notification", async () => await notificationCount(stack, orderId) === 1);
    await waitFor("the outcome on the tap", () => tap.messages.length === 1);
    // Park a copy of the handled outcome, as a crash between commit and ack could leave one: the
    // broker's own dead-lettering keeps its publisher.
    await stack.broker.forward(tap.messages[0], {
      exchange: DEAD_LETTER_EXCHANGE,
      routingKey: Queue.orderConfirmed,
    }, {
      "x-rejected-reason": "copy for the test",
      "x-original-routing-key": EventType.OrderConfirmed,
    }, { userId: tap.messages[0].userId });
    await waitForDepth(stack, deadLetterQueue(Queue.orderConfirmed), 1);
    assert.equal((await replayDeadLetters(stack)).length, 1);
    await waitFor(
      "notification to skip the duplicate",
      () => stack.services.notification!.logs.some((l) => l.msg === "skipped duplicate"),
    );
    assert.equal(await notificationCount(stack, orderId), 1);
  },
);

stackTest("deno task dlq prints the dead letters as JSON with --json, against the broker", {
  services: ["inventory"],
}, async (stack) => {
  await publishOrderPlaced(stack, "{}", "empty-object");
  await waitForDepth(stack, deadLetterQueue(Queue.orderPlaced), 1);
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      new URL("./dlq.ts", import.meta.url).pathname,
      "list",
      "--json",
    ],
    env: { AMQP_URL: stack.amqpUrl },
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const report = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.equal(report.count, 1);
  assert.equal(report.letters[0].message_id, "empty-object");
  assert.match(report.letters[0].reason, /event_id/);
});
