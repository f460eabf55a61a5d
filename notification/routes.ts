/**
 * Notification's HTTP routes: `GET /notifications?order_id=…` or `?user_id=…`. With authentication
 * on, a student sees only their own: without a filter, all of them; a filter narrows them down,
 * so asking for another student's (by `user_id` or by one of their `order_id`s) finds nothing, just
 * as for a student who was never told anything. An admin sees anyone's. With a webhook configured,
 * each notification shows where its delivery stands.
 *
 * For operators (the admin role under authentication): `GET /deliveries?status=failed|pending`, the
 * counts of pending and failed webhook deliveries and the newest 100 of one status, and
 * `POST /deliveries/{webhook_id}/retry`, which gives a failed delivery another go.
 * @module
 */
import { Hono } from "hono";
import type { Store } from "../shared/store.ts";
import type { Logger } from "../shared/log.ts";
import {
  ADMIN_ROLE,
  type AuthConfig,
  authenticate,
  callerOf,
  limitedTo,
  requireRole,
} from "../shared/auth.ts";
import { listNotifications } from "./notifications.ts";
import { listDeliveries, retryDelivery } from "./webhook_deliveries.ts";

/** Options for {@linkcode notificationRoutes}. */
export interface NotificationRoutesOptions {
  /** How bearer tokens are checked. @default {not at all: anyone may read anyone's} */
  auth?: AuthConfig;
  /** Says at start that authentication is off, and who retried a delivery. @default {no log} */
  log?: Logger;
  /**
   * A webhook is configured: each notification shows its delivery (`webhook_id`, `status`,
   * `attempts`, `delivered_at`). @default {false}
   */
  webhook?: boolean;
}

/** Creates the notification's app. */
export function notificationRoutes(store: Store, options: NotificationRoutesOptions = {}): Hono {
  const app = new Hono();
  const auth = authenticate(options.auth, { log: options.log });
  app.get("/notifications", auth, async (c) => {
    const own = limitedTo(callerOf(c));
    const filter = { order_id: c.req.query("order_id"), user_id: c.req.query("user_id") };
    if (own !== undefined && filter.user_id !== undefined && filter.user_id !== own) {
      return c.json([]);
    }
    if (own !== undefined && filter.order_id === undefined) filter.user_id = own;
    if (filter.order_id === undefined && filter.user_id === undefined) {
      return c.json({ error: "order_id or user_id is required", field: "order_id" }, 400);
    }
    const withDelivery = options.webhook ?? false;
    const found = await store.read((tx) => listNotifications(tx, filter, { withDelivery }));
    return c.json(own === undefined ? found : found.filter((n) => n.user_id === own));
  });
  // Deliveries carry every student's notifications: an operator's business, not a student's.
  const adminOnly = requireRole(ADMIN_ROLE);
  app.get("/deliveries", auth, adminOnly, async (c) => {
    const status = c.req.query("status");
    if (status !== "failed" && status !== "pending") {
      return c.json({ error: "status must be failed or pending", field: "status" }, 400);
    }
    return c.json(await store.read((tx) => listDeliveries(tx, status)));
  });
  app.post("/deliveries/:webhook_id/retry", auth, adminOnly, async (c) => {
    const webhookId = c.req.param("webhook_id");
    if (!options.webhook) {
      return c.json({ error: "no webhook is configured (NOTIFY_WEBHOOK_URL)" }, 409);
    }
    const outcome = await store.transaction((tx) => retryDelivery(tx, webhookId, Date.now()));
    if (outcome.retried) {
      const sub = callerOf(c).userId;
      options.log?.info("retrying webhook delivery", { webhook_id: webhookId, ...sub && { sub } });
      return c.json({ webhook_id: webhookId, status: "pending" }, 202);
    }
    if (outcome.status === undefined) {
      return c.json({ error: `no such delivery: ${webhookId}` }, 404);
    }
    return c.json({
      error: `only a failed delivery can be retried: this one is ${outcome.status}`,
      status: outcome.status,
    }, 409);
  });
  return app;
}
