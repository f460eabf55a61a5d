import assert from "node:assert/strict";
import {
  brokerUserOf,
  isTrusted,
  OPERATOR,
  prefixOf,
  PUBLISHED_BY_HEADER,
  publisherOf,
} from "./origin.ts";
import { EventType, Queue } from "./topology.ts";

const PREFIX = "campus-food";

Deno.test("brokerUserOf() and prefixOf() name a role's user in a deployment and back", () => {
  assert.equal(brokerUserOf("order", PREFIX), "campus-food-order");
  assert.equal(brokerUserOf(OPERATOR, PREFIX), "campus-food-operator");
  assert.equal(prefixOf("campus-food-inventory", "inventory"), PREFIX);
  assert.equal(prefixOf("guest", "inventory"), undefined);
  assert.equal(prefixOf("-inventory", "inventory"), undefined);
});

Deno.test("publisherOf() believes the header only on a copy the consumer made itself", () => {
  const queue = Queue.orderPlaced;
  const header = { [PUBLISHED_BY_HEADER]: "campus-food-order" };
  assert.equal(
    publisherOf({ userId: "campus-food-order", headers: {} }, queue, PREFIX),
    "campus-food-order",
  );
  assert.equal(
    publisherOf({ userId: "campus-food-inventory", headers: header }, queue, PREFIX),
    "campus-food-order",
  );
  assert.equal(
    publisherOf({ userId: "campus-food-notification", headers: header }, queue, PREFIX),
    "campus-food-notification",
  );
  assert.equal(publisherOf({ userId: undefined, headers: header }, queue, PREFIX), undefined);
});

Deno.test("isTrusted() believes an event only from the service that publishes its type", () => {
  const options = { queue: Queue.orderPlaced, prefix: PREFIX };
  const from = (userId: string) => ({ userId, headers: {} });
  assert.equal(isTrusted(from("campus-food-order"), EventType.OrderPlaced, options), true);
  assert.equal(isTrusted(from("campus-food-notification"), EventType.OrderPlaced, options), false);
  assert.equal(
    isTrusted(from("anyone"), EventType.OrderPlaced, { ...options, prefix: undefined }),
    true,
    "services that share one user cannot be told apart",
  );
});
