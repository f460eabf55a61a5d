/**
 * The order service: accepts orders over HTTP, stores each with its `OrderPlaced` event in one
 * transaction, publishes through the outbox, and alone decides each order's fate: CONFIRMED or
 * REJECTED from inventory's outcome, CANCELLED (the student asked) or EXPIRED (no outcome within
 * ORDER_DECISION_TIMEOUT), each decision published in the transaction that makes it.
 * @module
 */
import { consumer, runService } from "../shared/service.ts";
import { inventoryOutcomeSchema } from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { idempotencyKeyRetention, ORDER_MIGRATIONS } from "./orders.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";
import { startExpiry } from "./expire_orders.ts";
import { orderRoutes } from "./routes.ts";
import { ORDER_VARIABLES } from "./config.ts";

if (import.meta.main) {
  await runService({
    name: "order",
    config: { variables: ORDER_VARIABLES },
    migrations: ORDER_MIGRATIONS,
    // Its consumers take the place of the earlier version's `order-status` queue.
    retiresQueues: true,
    consumers: ({ log }) =>
      [Queue.inventoryReserved, Queue.inventoryFailed].map((queue) =>
        consumer({ queue, schema: inventoryOutcomeSchema, handle: handleInventoryOutcome(log) })
      ),
    tasks: ({ store, config, log }) => [startExpiry(store, config.orderDecisionTimeoutMs, { log })],
    retention: (config) => [idempotencyKeyRetention(config.idempotencyKeyRetentionMs)],
    routes: ({ store, config, log }) =>
      orderRoutes(store, {
        log,
        decisionTimeoutMs: config.orderDecisionTimeoutMs,
        auth: config.auth,
        maxUnitsPerStudent: config.maxUnitsPerStudent,
      }),
  });
}
