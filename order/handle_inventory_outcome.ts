/**
 * The order service's handler of the inventory outcomes: moves each order to CONFIRMED or REJECTED.
 * @module
 */
import type { EventHandler } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import type { InventoryOutcome } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { decideOrder } from "./orders.ts";

/** Creates the handler of both inventory outcomes. */
export function handleInventoryOutcome(log: Logger): EventHandler<InventoryOutcome> {
  return async function updateOrderStatus(tx, event, context) {
    const outcome = event.event_type === EventType.InventoryReserved
      ? { status: "CONFIRMED" as const }
      : { status: "REJECTED" as const, reason: event.reason };
    const fields = {
      order_id: event.order_id,
      event_id: event.event_id,
      trace_id: context.traceId,
      status: outcome.status,
    };
    return await decideOrder(tx, event.order_id, outcome)
      ? () => log.info("updated order status", fields)
      : () => log.info("skipped outcome of an order that is not pending here", fields);
  };
}
