/**
 * Notification's handler of `OrderCancelled`: tells the student the order was cancelled or
 * expired, once. An order cancelled after it was CONFIRMED is told of the confirmation first, if
 * its `InventoryReserved` has not come yet, so the student hears both, in the order they happened.
 * @module
 */
import { type BatchHandler, eachEvent, orderEventFields } from "../shared/consumer.ts";
import { CancelReason, type OrderCancelled } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { lockNotifications, type NotifyOptions, notifyOrder } from "./notifications.ts";

/** Creates the handler of `OrderCancelled`: one event after the other, the batch's orders locked first. */
export function handleOrderCancelled(
  log: Logger,
  options: NotifyOptions = {},
): BatchHandler<OrderCancelled> {
  return eachEvent(async function notifyStudent(tx, event, context) {
    const fields = orderEventFields(event.order_id, event, context);
    const sent: string[] = [];
    if (event.previous_status === "CONFIRMED") {
      const confirmed = await notifyOrder(tx, { kind: "order_confirmed", order: event }, options);
      if (confirmed) sent.push(confirmed);
    }
    const kind = event.reason === CancelReason.expired ? "order_expired" : "order_cancelled";
    const calledOff = await notifyOrder(tx, { kind, order: event }, options);
    if (calledOff) sent.push(calledOff);
    return () => {
      for (const message of sent) log.info(message, fields);
      if (!calledOff) log.info("skipped order that was already notified", fields);
    };
  }, { lock: (tx, events) => lockNotifications(tx, events.map((event) => event.order_id)) });
}
