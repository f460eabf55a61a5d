/**
 * Inventory's handler of `OrderPlaced`: one reservation per order, stock taken all or nothing, and
 * exactly one outcome event, all in the consumer's transaction. An order whose `OrderCancelled`
 * came first takes nothing and fails with reason {@linkcode ORDER_CANCELLED_REASON}; one that
 * arrives clearly after its `decide_by`, when the order service has expired it, takes nothing and
 * fails with reason {@linkcode ORDER_EXPIRED_REASON}.
 *
 * `decide_by` is a time on the order service's clock, judged here on inventory's: "clearly" allows
 * for the two clocks disagreeing by up to `clockSkewToleranceMs`. Inventory ahead by less than that
 * still reserves fresh orders; an order it reserves after the order service expired it (inventory
 * behind, or within the tolerance) is released by that expiry's `OrderCancelled`, so a late
 * reservation costs stock for a moment and never an order.
 * @module
 */
import { type BatchHandler, orderEventFields } from "../shared/consumer.ts";
import {
  inventoryOutcome,
  ORDER_CANCELLED_REASON,
  ORDER_EXPIRED_REASON,
  type OrderPlaced,
} from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { claimReservations, failReservations, startTakingStock } from "./stock.ts";

/** Options for {@linkcode handleOrderPlaced}. */
export interface OrderPlacedOptions {
  log: Logger;
  /** Fail every reservation with reason `simulated failure` (INVENTORY_FAIL). @default {false} */
  failAll?: boolean;
  /** How far inventory's clock may run ahead of the order service's, in milliseconds. @default {0} */
  clockSkewToleranceMs?: number;
  /** The current time in milliseconds since the epoch. @default {Date.now} */
  now?: () => number;
}

/**
 * Creates the handler of `OrderPlaced`. A batch costs the same few statements whatever its size:
 * its stock locked and read, its reservations claimed, its orders decided in the order they came
 * against the stock it read, then the stock and the failed reservations written.
 */
export function handleOrderPlaced(options: OrderPlacedOptions): BatchHandler<OrderPlaced> {
  const { log, failAll = false, clockSkewToleranceMs = 0, now = Date.now } = options;
  return async function reserveOrders(tx, batch) {
    const orders = batch.map(({ event }) => event.order);
    const stock = await startTakingStock(
      tx,
      orders.flatMap((order) => order.items.map((item) => item.sku)),
    );
    const claims = await claimReservations(tx, orders);
    const failed: Array<{ order_id: string; reason: string }> = [];
    const afterCommit = batch.map(({ event, context }, index) => {
      const { order } = event;
      const fields = orderEventFields(order.order_id, event, context);
      const claim = claims[index];
      if (claim === "duplicate") {
        return () => log.info("skipped order that already has a reservation", fields);
      }
      const reason = claim === "cancelled"
        ? ORDER_CANCELLED_REASON
        : order.decide_by !== undefined &&
            now() > Date.parse(order.decide_by) + clockSkewToleranceMs
        ? ORDER_EXPIRED_REASON
        : failAll
        ? "simulated failure"
        : stock.take(order.items);
      if (reason !== undefined && claim === "claimed") {
        failed.push({ order_id: order.order_id, reason });
      }
      context.publish(inventoryOutcome(order, reason));
      return () =>
        reason === undefined
          ? log.info("reserved stock", fields)
          : log.info("reservation failed", { ...fields, reason });
    });
    await stock.save();
    await failReservations(tx, failed);
    return afterCommit;
  };
}
