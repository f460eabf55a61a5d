/**
 * Notification's handler of the order service's decisions `OrderConfirmed` and `OrderRejected`:
 * one message to the student per order, sent (logged) only after it is recorded, and none once the
 * student was told the order was cancelled or expired. Notification tells decisions and nothing
 * else: what inventory found out about stock reaches the student only as the order service's
 * decision about it, so no student hears "confirmed" of an order that ended otherwise.
 * @module
 */
import { type BatchHandler, firstOfEach, orderEventFields } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import type { OrderConfirmed, OrderRejected } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import {
  lockNotifications,
  type NotifyOptions,
  notifyOrder,
  notifyOrders,
} from "./notifications.ts";

/** A decision about an order that the student is told of. */
export type OrderDecision = OrderConfirmed | OrderRejected;

/**
 * Creates the handler of both decisions. The batch's orders are locked, then told in one
 * statement; a second decision about an order in the same batch is weighed after, alone.
 */
export function handleOrderDecision(
  log: Logger,
  options: NotifyOptions = {},
): BatchHandler<OrderDecision> {
  return async function notifyStudents(tx, batch) {
    await lockNotifications(tx, batch.map(({ event }) => event.order_id));
    const kindOf = (event: OrderDecision) =>
      event.event_type === EventType.OrderConfirmed ? "order_confirmed" : "order_rejected";
    const first = firstOfEach(batch, ({ event }) => event.order_id);
    const told = await notifyOrders(
      tx,
      first.map(({ event }) => ({ kind: kindOf(event), order: event })),
      options,
    );
    const messages = new Map(first.map((handled, index) => [handled, told[index]]));
    const afterCommit = [];
    for (const handled of batch) {
      const { event, context } = handled;
      const fields = orderEventFields(event.order_id, event, context);
      const message = messages.has(handled)
        ? messages.get(handled)
        : await notifyOrder(tx, { kind: kindOf(event), order: event }, options);
      afterCommit.push(
        message
          ? () => log.info(message, fields)
          : () => log.info("skipped order that was already notified", fields),
      );
    }
    return afterCommit;
  };
}
