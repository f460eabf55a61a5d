/**
 * The notification service: consumes the order service's decisions, and records and sends each
 * message to the student once: confirmed or rejected, then cancelled or expired.
 * @module
 */
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/log.ts";
import { openStore, type Tx } from "../shared/store.ts";
import { connectBroker } from "../shared/broker.ts";
import { startConsumer } from "../shared/consumer.ts";
import { inboxRetention } from "../shared/inbox.ts";
import { watchOutages } from "../shared/outage.ts";
import {
  orderCancelledSchema,
  orderConfirmedSchema,
  orderRejectedSchema,
} from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { serveHttp, serviceApp } from "../shared/http.ts";
import { onShutdown } from "../shared/shutdown.ts";
import { startRetention } from "../shared/retention.ts";
import { lockNotifications, NOTIFICATION_MIGRATIONS, setWebhookDelivery } from "./notifications.ts";
import { startWebhookSender } from "./webhook_sender.ts";
import { handleOrderDecision } from "./handle_order_decision.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";
import { notificationRoutes } from "./routes.ts";

if (import.meta.main) {
  const config = loadConfig("notification");
  const log = createLogger("notification", { level: config.logLevel, format: config.logFormat });
  const store = await openStore(config.dataDir, "notification", {
    migrations: NOTIFICATION_MIGRATIONS,
    databaseUrl: config.databaseUrl,
    waitForServer: { log },
  });
  const broker = connectBroker(config.amqpUrls, {
    log,
    connectionName: "notification",
    topology: { retryDelaysMs: config.retryDelaysMs },
    tls: config.amqpTls,
  });
  const outages = watchOutages(store, { log });
  const webhook = config.notifyWebhook;
  setWebhookDelivery(webhook !== undefined);
  const sender = webhook && startWebhookSender(store, { ...webhook, log, outages });
  const prepare = (tx: Tx, events: Array<{ order_id: string }>) =>
    lockNotifications(tx, events.map((event) => event.order_id));
  const common = {
    prepare,
    log,
    outages,
    retryDelaysMs: config.retryDelaysMs,
    faultRate: config.faultTransientRate,
  };
  const consumers = [
    startConsumer(broker, store, {
      queue: Queue.orderConfirmed,
      schema: orderConfirmedSchema,
      handle: handleOrderDecision(log),
      ...common,
    }),
    startConsumer(broker, store, {
      queue: Queue.orderRejected,
      schema: orderRejectedSchema,
      handle: handleOrderDecision(log),
      ...common,
    }),
    startConsumer(broker, store, {
      queue: Queue.orderCancelledNotifications,
      schema: orderCancelledSchema,
      handle: handleOrderCancelled(log),
      ...common,
    }),
  ];
  const retention = startRetention(store, [inboxRetention(config.inboxRetentionMs)], { log });
  const routes = notificationRoutes(store, { auth: config.auth, log, webhook: Boolean(webhook) });
  const app = serviceApp(routes, {
    store,
    broker,
    outages,
    log,
    maxInFlight: config.httpMaxInFlight,
    bodyTimeoutMs: config.httpBodyTimeoutMs,
  });
  const server = serveHttp(app, config.ports.notification, log, { hostname: config.httpHost });
  onShutdown(log, [
    ...consumers.map((consumer) => consumer.stop),
    retention.stop,
    ...sender ? [sender.stop] : [],
    outages.stop,
    broker.close,
    server.shutdown,
    store.close,
  ]);
}
