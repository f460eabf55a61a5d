/**
 * The order service: accepts orders over HTTP, stores each with its `OrderPlaced` event in one
 * transaction, publishes through the outbox, and alone decides each order's fate: CONFIRMED or
 * REJECTED from inventory's outcome, CANCELLED (the student asked) or EXPIRED (no outcome within
 * ORDER_DECISION_TIMEOUT), each decision published in the transaction that makes it.
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
import { inventoryOutcomeSchema } from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { serveHttp, serviceApp } from "../shared/http.ts";
import { onShutdown } from "../shared/shutdown.ts";
import { startRetention } from "../shared/retention.ts";
import { idempotencyKeyRetention, ORDER_MIGRATIONS } from "./orders.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";
import { startExpiry } from "./expire_orders.ts";
import { orderRoutes } from "./routes.ts";

if (import.meta.main) {
  const config = loadConfig("order");
  const log = createLogger("order", { level: config.logLevel, format: config.logFormat });
  const store = await openStore(config.dataDir, "order", {
    migrations: ORDER_MIGRATIONS,
    databaseUrl: config.databaseUrl,
    waitForServer: { log },
  });
  const broker = connectBroker(config.amqpUrls, {
    log,
    connectionName: "order",
    // The order service's consumers take the place of the earlier version's queue: it retires it.
    topology: { retryDelaysMs: config.retryDelaysMs, retire: true },
    tls: config.amqpTls,
  });
  const outages = watchOutages(store, { log });
  const relay = startOutboxRelay(store, broker, { log, outages });
  const consumers = [Queue.inventoryReserved, Queue.inventoryFailed].map((queue) =>
    startConsumer(broker, store, {
      queue,
      schema: inventoryOutcomeSchema,
      handle: handleInventoryOutcome(log),
      log,
      outages,
      retryDelaysMs: config.retryDelaysMs,
    })
  );
  const expiry = startExpiry(store, config.orderDecisionTimeoutMs, { log });
  const retention = startRetention(store, [
    inboxRetention(config.inboxRetentionMs),
    idempotencyKeyRetention(config.idempotencyKeyRetentionMs),
  ], { log });
  const routes = orderRoutes(store, {
    log,
    decisionTimeoutMs: config.orderDecisionTimeoutMs,
    auth: config.auth,
    maxUnitsPerStudent: config.maxUnitsPerStudent,
  });
  const app = serviceApp(routes, {
    store,
    broker,
    outages,
    log,
    maxInFlight: config.httpMaxInFlight,
    bodyTimeoutMs: config.httpBodyTimeoutMs,
  });
  const server = serveHttp(app, config.ports.order, log, { hostname: config.httpHost });
  onShutdown(log, [
    server.shutdown,
    ...consumers.map((consumer) => consumer.stop),
    expiry.stop,
    relay.stop,
    retention.stop,
    outages.stop,
    broker.close,
    store.close,
  ]);
}
