/**
 * The inventory service: consumes `OrderPlaced`, reserves stock exactly once per order, and
 * publishes `InventoryReserved` or `InventoryFailed` through its outbox; consumes `OrderCancelled`
 * and gives back what the order holds.
 * @module
 */
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/log.ts";
import { openStore } from "../shared/store.ts";
import { connectBroker } from "../shared/broker.ts";
import { startOutboxRelay } from "../shared/relay.ts";
import { startConsumer } from "../shared/consumer.ts";
import { inboxRetention } from "../shared/inbox.ts";
import { watchOutages } from "../shared/outage.ts";
import { orderCancelledSchema, orderPlacedSchema } from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { serveHttp, serviceApp } from "../shared/http.ts";
import { onShutdown } from "../shared/shutdown.ts";
import { startRetention } from "../shared/retention.ts";
import { INVENTORY_MIGRATIONS, lockStock, seedStock } from "./stock.ts";
import { handleOrderPlaced } from "./handle_order_placed.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";
import { inventoryRoutes } from "./routes.ts";

if (import.meta.main) {
  const config = loadConfig("inventory");
  const log = createLogger("inventory", { level: config.logLevel, format: config.logFormat });
  const store = await openStore(config.dataDir, "inventory", {
    migrations: INVENTORY_MIGRATIONS,
    databaseUrl: config.databaseUrl,
    waitForServer: { log },
  });
  await seedStock(store, config.initialStock);
  const broker = connectBroker(config.amqpUrls, {
    log,
    connectionName: "inventory",
    topology: { retryDelaysMs: config.retryDelaysMs },
    tls: config.amqpTls,
  });
  const outages = watchOutages(store, { log });
  const relay = startOutboxRelay(store, broker, { log, outages });
  const common = {
    log,
    outages,
    retryDelaysMs: config.retryDelaysMs,
    faultRate: config.faultTransientRate,
  };
  const consumers = [
    startConsumer(broker, store, {
      queue: Queue.orderPlaced,
      schema: orderPlacedSchema,
      handle: handleOrderPlaced({ log, failAll: config.inventoryFail }),
      prepare: (tx, events) =>
        lockStock(tx, events.flatMap((e) => e.order.items.map((i) => i.sku))),
      ...common,
    }),
    startConsumer(broker, store, {
      queue: Queue.orderCancelled,
      schema: orderCancelledSchema,
      handle: handleOrderCancelled(log),
      prepare: (tx, events) =>
        lockStock(tx, events.flatMap((e) => e.items ?? []).map((i) => i.sku)),
      ...common,
    }),
  ];
  const retention = startRetention(store, [inboxRetention(config.inboxRetentionMs)], { log });
  const app = serviceApp(inventoryRoutes(store), {
    store,
    broker,
    outages,
    log,
    maxInFlight: config.httpMaxInFlight,
    bodyTimeoutMs: config.httpBodyTimeoutMs,
  });
  const server = serveHttp(app, config.ports.inventory, log, { hostname: config.httpHost });
  onShutdown(log, [
    ...consumers.map((consumer) => consumer.stop),
    relay.stop,
    retention.stop,
    outages.stop,
    broker.close,
    server.shutdown,
    store.close,
  ]);
}
