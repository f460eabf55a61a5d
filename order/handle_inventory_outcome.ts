/**
 * The order service's handler of the inventory outcomes: moves each PENDING order to CONFIRMED or
 * REJECTED. An outcome that comes after the order was cancelled or expired changes nothing: the
 * `OrderCancelled` already sent makes inventory release what the outcome reserved. Inventory's
 * "order expired" is no outcome either: it refused an order past its deadline, which the expiry
 * sweep decides (on this service's clock, so a skew between the two changes nothing).
 * @module
 */
import type { EventHandler } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import { type InventoryOutcome, ORDER_EXPIRED_REASON } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { metrics } from "../shared/metrics.ts";
import { changeStatus } from "./orders.ts";

/** Creates the handler of both inventory outcomes. */
export function handleInventoryOutcome(log: Logger): EventHandler<InventoryOutcome> {
  return async function updateOrderStatus(tx, event, context) {
    const fields = {
      order_id: event.order_id,
      event_id: event.event_id,
      trace_id: context.traceId,
    };
    if (event.event_type === EventType.InventoryFailed && event.reason === ORDER_EXPIRED_REASON) {
      return () => log.info("skipped failure of an order past its deadline: it expires", fields);
    }
    const change = event.event_type === EventType.InventoryReserved
      ? { from: "PENDING", to: "CONFIRMED" } as const
      : { from: "PENDING", to: "REJECTED", reason: event.reason } as const;
    if (!await changeStatus(tx, event.order_id, change)) {
      return () =>
        log.info("skipped outcome of an order that is not pending here", {
          ...fields,
          status: change.to,
        });
    }
    return () => {
      metrics.orderStatusChanges.inc({ from: change.from, to: change.to });
      log.info("updated order status", { ...fields, status: change.to });
    };
  };
}
