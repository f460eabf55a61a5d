/**
 * Notification's handler of `InventoryReserved` and `InventoryFailed`: exactly one message to the
 * student per order, sent (logged) only after it is recorded.
 * @module
 */
import type { EventHandler } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import type { InventoryOutcome } from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import { recordNotification } from "./notifications.ts";

/** Creates the handler of both inventory outcomes. */
export function handleInventoryOutcome(log: Logger): EventHandler<InventoryOutcome> {
  return async function notifyStudent(tx, event, context) {
    const confirmed = event.event_type === EventType.InventoryReserved;
    const userId = event.user_id ?? "unknown user";
    const food = event.items?.map((item) => `${item.qty}× ${item.sku}`).join(", ");
    const message = confirmed
      ? `order ${event.order_id} for ${userId} confirmed${food ? `: ${food}` : ""}`
      : `order ${event.order_id} for ${userId} rejected: ${event.reason}`;
    const recorded = await recordNotification(tx, {
      order_id: event.order_id,
      user_id: userId,
      kind: confirmed ? "order_confirmed" : "order_rejected",
      message,
      created_at: new Date().toISOString(),
    });
    const fields = {
      order_id: event.order_id,
      event_id: event.event_id,
      trace_id: context.traceId,
    };
    return recorded
      ? () => log.info(message, fields)
      : () => log.info("skipped order that was already notified", fields);
  };
}
