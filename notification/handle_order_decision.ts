/**
 * Notification's handler of the order service's decisions `OrderConfirmed` and `OrderRejected`:
 * one message to the student per order, sent (logged) only after it is recorded, and none once the
 * student was told the order was cancelled or expired. Notification tells decisions and nothing
 * else: what inventory found out about stock reaches the student only as the order service's
 * decision about it, so no student hears "confirmed" of an order that ended otherwise.
 * @module
 */
import { type EventHandler, orderEventFields } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import type { OrderConfirmed, OrderRejected } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { notifyOrder } from "./notifications.ts";

/** A decision about an order that the student is told of. */
export type OrderDecision = OrderConfirmed | OrderRejected;

/** Creates the handler of both decisions. */
export function handleOrderDecision(log: Logger): EventHandler<OrderDecision> {
  return async function notifyStudent(tx, event, context) {
    const fields = orderEventFields(event.order_id, event, context);
    const kind = event.event_type === EventType.OrderConfirmed
      ? "order_confirmed"
      : "order_rejected";
    const message = await notifyOrder(tx, kind, event);
    return message
      ? () => log.info(message, fields)
      : () => log.info("skipped order that was already notified", fields);
  };
}
