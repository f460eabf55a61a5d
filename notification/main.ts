/**
 * The notification service: consumes the order service's decisions, and records and sends each
 * message to the student once: confirmed or rejected, then cancelled or expired.
 * @module
 */
import { consumer, runService } from "../shared/service.ts";
import {
  orderCancelledSchema,
  orderConfirmedSchema,
  orderRejectedSchema,
} from "../shared/events.ts";
import { Queue } from "../shared/topology.ts";
import { NOTIFICATION_MIGRATIONS } from "./notifications.ts";
import { startWebhookSender } from "./webhook_sender.ts";
import { handleOrderDecision } from "./handle_order_decision.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";
import { notificationRoutes } from "./routes.ts";
import { NOTIFICATION_RULES, NOTIFICATION_VARIABLES, webhookOf } from "./config.ts";

if (import.meta.main) {
  await runService({
    name: "notification",
    config: { variables: NOTIFICATION_VARIABLES, rules: NOTIFICATION_RULES },
    migrations: NOTIFICATION_MIGRATIONS,
    consumers: ({ config, log }) => {
      // Every notification recorded gets its pending delivery when a webhook is configured.
      const notify = { webhook: webhookOf(config) !== undefined };
      return [
        consumer({
          queue: Queue.orderConfirmed,
          schema: orderConfirmedSchema,
          handle: handleOrderDecision(log, notify),
        }),
        consumer({
          queue: Queue.orderRejected,
          schema: orderRejectedSchema,
          handle: handleOrderDecision(log, notify),
        }),
        consumer({
          queue: Queue.orderCancelledNotifications,
          schema: orderCancelledSchema,
          handle: handleOrderCancelled(log, notify),
        }),
      ];
    },
    tasks: ({ store, config, log, outages }) => {
      const webhook = webhookOf(config);
      return webhook ? [startWebhookSender(store, { ...webhook, log, outages })] : [];
    },
    routes: ({ store, config, log }) =>
      notificationRoutes(store, { auth: config.auth, log, webhook: Boolean(webhookOf(config)) }),
  });
}
