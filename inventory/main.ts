/**
 * The inventory service: consumes `OrderPlaced`, reserves stock exactly once per order, and
 * publishes `InventoryReserved` or `InventoryFailed` through its outbox; consumes `OrderCancelled`
 * and gives back what the order holds.
 * @module
 */
import { consumer, runService } from "../shared/service.ts";
import { orderCancelledSchema, orderPlacedSchema } from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { INVENTORY_MIGRATIONS, seedStock } from "./stock.ts";
import { handleOrderPlaced } from "./handle_order_placed.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";
import { inventoryRoutes } from "./routes.ts";
import { INVENTORY_VARIABLES } from "./config.ts";

if (import.meta.main) {
  await runService({
    name: "inventory",
    config: { variables: INVENTORY_VARIABLES },
    migrations: INVENTORY_MIGRATIONS,
    setUp: ({ store, config }) => seedStock(store, config.initialStock),
    consumers: ({ config, log }) => [
      consumer({
        queue: Queue.orderPlaced,
        schema: orderPlacedSchema,
        handle: handleOrderPlaced({
          log,
          failAll: config.inventoryFail,
          clockSkewToleranceMs: config.clockSkewToleranceMs,
        }),
      }),
      consumer({
        queue: Queue.orderCancelled,
        schema: orderCancelledSchema,
        handle: handleOrderCancelled(log),
      }),
    ],
    routes: ({ store }) => inventoryRoutes(store),
  });
}
