import assert from "node:assert/strict";
import { brokerDefinitions, USER_PREFIX } from "./broker_definitions.ts";
import { SERVICES } from "../../shared/topology.ts";
import {
  DEAD_LETTER_EXCHANGE,
  deadLetterQueue,
  EXCHANGE,
  Queue,
  QUEUES,
  RETRY_EXCHANGE,
} from "../../shared/topology.ts";
import { brokerUserOf, OPERATOR } from "../../shared/origin.ts";

function devUser(role: Parameters<typeof brokerUserOf>[0]): { name: string; password: string } {
  const name = brokerUserOf(role, USER_PREFIX);
  return { name, password: name };
}

const users = Object.fromEntries(SERVICES.map((name) => [name, devUser(name)])) as Parameters<
  typeof brokerDefinitions
>[0]["users"];
const operator = devUser(OPERATOR);

Deno.test("brokerDefinitions() are what rabbitmq/definitions.json holds for the compose broker", async () => {
  const file = JSON.parse(
    await Deno.readTextFile(new URL("../../rabbitmq/definitions.json", import.meta.url)),
  );
  const made = await brokerDefinitions({
    vhost: "/",
    users,
    operator,
    administrators: [{ name: "guest", password: "guest" }],
  });
  assert.deepEqual(
    file,
    made,
    "regenerate it: deno task broker:setup --dev --definitions rabbitmq/definitions.json",
  );
});

Deno.test("brokerDefinitions() hold the whole topology and let no service configure anything", async () => {
  const made = await brokerDefinitions({ vhost: "v", users, retryDelaysMs: [500, 2000] });
  assert.deepEqual(
    made.exchanges.map((e) => [e.name, e.type]),
    [[EXCHANGE, "topic"], [DEAD_LETTER_EXCHANGE, "direct"], [RETRY_EXCHANGE, "topic"]],
  );
  const queues = made.queues.map((q) => q.name);
  for (const queue of QUEUES) {
    for (const name of [queue, `${queue}.dlq`, `${queue}.retry.500ms`, `${queue}.retry.2s`]) {
      assert.ok(queues.includes(name), name);
    }
  }
  assert.ok(made.permissions.every((p) => p.configure === "^$"));
  const notification = made.permissions.find((p) => p.user === users.notification.name)!;
  assert.ok(!new RegExp(notification.write).test(EXCHANGE), "notification publishes no event");
  assert.ok(!new RegExp(notification.read).test("order-placed"));
  const orderEvents = made.topic_permissions.find((p) =>
    p.user === users.order.name && p.exchange === EXCHANGE
  )!;
  assert.ok(new RegExp(orderEvents.write).test("OrderPlaced"));
  assert.ok(!new RegExp(orderEvents.write).test("InventoryReserved"));
  const inventoryRetries = made.topic_permissions.find((p) =>
    p.user === users.inventory.name && p.exchange === RETRY_EXCHANGE
  )!;
  assert.ok(new RegExp(inventoryRetries.write).test("order-placed.retry.500ms"));
  assert.ok(!new RegExp(inventoryRetries.write).test("inventory-reserved.retry.500ms"));
  assert.ok(!new RegExp(inventoryRetries.write).test("order-placed.dlq"));
});

Deno.test("brokerDefinitions() let the operator watch, read the DLQs and replay into a queue as its publisher, and nothing else", async () => {
  const made = await brokerDefinitions({ vhost: "v", users, operator });
  const user = made.users.find((u) => u.name === operator.name)!;
  assert.deepEqual(user.tags, ["monitoring", "impersonator"]);
  const { configure, write, read } = made.permissions.find((p) => p.user === operator.name)!;
  const matches = (pattern: string, name: string) => new RegExp(pattern).test(name);
  assert.ok(matches(write, "amq.default"), "a replay goes straight to its queue");
  for (const exchange of [EXCHANGE, RETRY_EXCHANGE, DEAD_LETTER_EXCHANGE]) {
    assert.ok(!matches(write, exchange), `publishes nothing to ${exchange}`);
  }
  for (const queue of QUEUES) {
    assert.ok(matches(read, deadLetterQueue(queue)), `reads ${deadLetterQueue(queue)}`);
    assert.ok(!matches(read, queue), `takes nothing from ${queue}`);
  }
  assert.ok(!matches(read, `${Queue.orderPlaced}.retry.1s`));
  // The console's tap: a server-named queue bound to the events exchange.
  assert.ok(matches(configure, "amq.gen-abc") && matches(write, "amq.gen-abc"));
  assert.ok(matches(read, "amq.gen-abc") && matches(read, EXCHANGE));
  assert.ok(!matches(configure, Queue.orderPlaced), "deletes and declares nothing of the topology");
});
