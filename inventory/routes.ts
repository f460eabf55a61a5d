/**
 * Inventory's HTTP routes: `GET /reservations/{order_id}` and `GET /stock`.
 * @module
 */
import { Hono } from "hono";
import type { Store } from "../shared/store.ts";
import { getReservation, listStock } from "./stock.ts";

/** Creates the inventory's app. */
export function inventoryRoutes(store: Store): Hono {
  const app = new Hono();
  app.get("/reservations/:order_id", async (c) => {
    const reservation = await store.read((tx) => getReservation(tx, c.req.param("order_id")));
    return reservation ? c.json(reservation) : c.json({ error: "reservation not found" }, 404);
  });
  app.get("/stock", async (c) => c.json(await store.read(listStock)));
  return app;
}
