/**
 * Inventory's handler of `OrderCancelled`, the compensation of the saga: a RESERVED reservation is
 * RELEASED and its stock put back, exactly once; an order inventory has not seen yet is remembered
 * as cancelled, so that its `OrderPlaced`, whenever it comes (still queued, retried, or replayed
 * from a DLQ), takes no stock.
 * @module
 */
import { type BatchHandler, eachEvent, orderEventFields } from "../shared/consumer.ts";
import type { OrderCancelled } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { counter } from "../shared/metrics.ts";
import { lockStock, releaseReservation } from "./stock.ts";

const MESSAGES = {
  released: "released stock of a cancelled order",
  remembered: "remembered a cancellation before its order",
  none: "skipped cancellation of an order that holds no stock",
} as const;

const compensations = counter(
  "compensations_total",
  "OrderCancelled events inventory handled, by what it did: released (stock put back), " +
    "remembered (before its OrderPlaced: no stock will be taken), none (no stock was held)",
  ["action"],
);

/**
 * Creates the handler of `OrderCancelled`: one event after the other, the stock rows of the whole
 * batch locked first.
 */
export function handleOrderCancelled(log: Logger): BatchHandler<OrderCancelled> {
  return eachEvent(async function compensateOrder(tx, event, context) {
    const action = await releaseReservation(tx, event.order_id, event.items ?? []);
    return () => {
      compensations.inc({ action });
      log.info(MESSAGES[action], {
        ...orderEventFields(event.order_id, event, context),
        reason: event.reason,
      });
    };
  }, {
    lock: (tx, events) =>
      lockStock(tx, events.flatMap((event) => event.items ?? []).map((item) => item.sku)),
  });
}
