/**
 * The notification service: consumes the inventory outcomes and records and sends exactly one
 * message to the student per order.
 * @module
 */
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/log.ts";
import { openStore } from "../shared/store.ts";
import { connectBroker } from "../shared/broker.ts";
import { startConsumer } from "../shared/consumer.ts";
import { inboxRetention } from "../shared/inbox.ts";
import { inventoryOutcomeSchema } from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { serveHttp, serviceApp } from "../shared/http.ts";
import { onShutdown } from "../shared/lifecycle.ts";
import { startRetention } from "../shared/retention.ts";
import { NOTIFICATION_MIGRATIONS } from "./notifications.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";
import { notificationRoutes } from "./routes.ts";

if (import.meta.main) {
  const config = loadConfig("notification");
  const log = createLogger("notification", { level: config.logLevel, format: config.logFormat });
  const store = await openStore(config.dataDir, "notification", {
    migrations: NOTIFICATION_MIGRATIONS,
    databaseUrl: config.databaseUrl,
  });
  const broker = connectBroker(config.amqpUrls, {
    log,
    connectionName: "notification",
    topology: { retryDelaysMs: config.retryDelaysMs },
  });
  const consumers = [Queue.inventoryReserved, Queue.inventoryFailed].map((queue) =>
    startConsumer(broker, store, {
      queue,
      schema: inventoryOutcomeSchema,
      handle: handleInventoryOutcome(log),
      log,
      retryDelaysMs: config.retryDelaysMs,
      faultRate: config.faultTransientRate,
    })
  );
  const retention = startRetention(store, [inboxRetention(config.inboxRetentionMs)], { log });
  const app = serviceApp(notificationRoutes(store), { store, broker });
  const server = serveHttp(app, config.ports.notification, log);
  onShutdown(log, [
    ...consumers.map((consumer) => consumer.stop),
    retention.stop,
    broker.close,
    server.shutdown,
    store.close,
  ]);
}
