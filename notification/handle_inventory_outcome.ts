/**
 * Notification's handler of `InventoryReserved` and `InventoryFailed`: one message to the student
 * per order, sent (logged) only after it is recorded, and none once the student was told the order
 * was cancelled or expired. The failure of an order cancelled before inventory saw it, or seen by
 * inventory after its deadline, is not news: its `OrderCancelled` tells the student.
 * @module
 */
import type { EventHandler } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import {
  type InventoryOutcome,
  ORDER_CANCELLED_REASON,
  ORDER_EXPIRED_REASON,
} from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { notifyOrder } from "./notifications.ts";

/** Creates the handler of both inventory outcomes. */
export function handleInventoryOutcome(log: Logger): EventHandler<InventoryOutcome> {
  return async function notifyStudent(tx, event, context) {
    const fields = {
      order_id: event.order_id,
      event_id: event.event_id,
      trace_id: context.traceId,
    };
    const failed = event.event_type === EventType.InventoryFailed;
    if (failed && event.reason === ORDER_CANCELLED_REASON) {
      return () => log.info("skipped failure of an order cancelled before it was reserved", fields);
    }
    if (failed && event.reason === ORDER_EXPIRED_REASON) {
      return () =>
        log.info("skipped failure of an order that expired before it was reserved", fields);
    }
    const kind = failed ? "order_rejected" : "order_confirmed";
    const message = await notifyOrder(tx, kind, event);
    return message
      ? () => log.info(message, fields)
      : () => log.info("skipped order that was already notified", fields);
  };
}
