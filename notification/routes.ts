/**
 * Notification's HTTP routes: `GET /notifications?order_id=…` or `?user_id=…`. With authentication
 * on, a student sees only their own: without a filter, all of them; a filter narrows them down,
 * so asking for another student's (by `user_id` or by one of their `order_id`s) finds nothing, just
 * as for a student who was never told anything. An admin sees anyone's. With a webhook configured,
 * each notification shows where its delivery stands.
 * @module
 */
import { Hono } from "hono";
import type { Store } from "../shared/store.ts";
import type { Logger } from "../shared/log.ts";
import { type AuthConfig, authenticate, callerOf, limitedTo } from "../shared/auth.ts";
import { listNotifications } from "./notifications.ts";

/** Options for {@linkcode notificationRoutes}. */
export interface NotificationRoutesOptions {
  /** How bearer tokens are checked. @default {not at all: anyone may read anyone's} */
  auth?: AuthConfig;
  /** Says at start that authentication is off. @default {no log} */
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
  return app;
}
