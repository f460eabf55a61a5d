/**
 * Notification's HTTP routes: `GET /notifications?order_id=…` or `?user_id=…`.
 * @module
 */
import { Hono } from "hono";
import type { Store } from "../shared/store.ts";
import { listNotifications } from "./notifications.ts";

/** Creates the notification's app. */
export function notificationRoutes(store: Store): Hono {
  const app = new Hono();
  app.get("/notifications", async (c) => {
    const filter = { order_id: c.req.query("order_id"), user_id: c.req.query("user_id") };
    if (filter.order_id === undefined && filter.user_id === undefined) {
      return c.json({ error: "order_id or user_id is required", field: "order_id" }, 400);
    }
    return c.json(await store.read((tx) => listNotifications(tx, filter)));
  });
  return app;
}
