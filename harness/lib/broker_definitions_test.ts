import assert from "node:assert/strict";
import { brokerDefinitions, serviceUserName } from "./broker_definitions.ts";
import { SERVICES } from "./service_process.ts";
import { DEAD_LETTER_EXCHANGE, EXCHANGE, QUEUES, RETRY_EXCHANGE } from "../../shared/topology.ts";

const users = Object.fromEntries(
  SERVICES.map((name) => [name, { name: serviceUserName(name), password: serviceUserName(name) }]),
) as Parameters<typeof brokerDefinitions>[0]["users"];

Deno.test("brokerDefinitions() are what rabbitmq/definitions.json holds for the compose broker", async () => {
  const file = JSON.parse(
    await Deno.readTextFile(new URL("../../rabbitmq/definitions.json", import.meta.url)),
  );
  const made = await brokerDefinitions({
    vhost: "/",
    users,
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
  assert.ok(!new RegExp(inventoryRetries.write).test("order-status.retry.500ms"));
  assert.ok(!new RegExp(inventoryRetries.write).test("order-placed.dlq"));
});
