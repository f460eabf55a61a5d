/**
 * The order service's handler of the inventory outcomes: decides each PENDING order, CONFIRMED or
 * REJECTED, and publishes the decision (`OrderConfirmed`, `OrderRejected`) in the same transaction,
 * for notification to tell the student. An outcome is a fact about stock, not a decision: one that
 * comes after the order was cancelled or expired changes nothing and is told to no one (the
 * `OrderCancelled` already sent makes inventory release what it reserved). Inventory's "order
 * expired" is no outcome either: it refused an order past its deadline, which the expiry sweep
 * decides (on this service's clock, so a skew between the two changes nothing).
 *
 * An outcome for an order this service has no record of (its `OrderPlaced` was published to the
 * broker by hand, as the original system's scripts do) records the order as decided by it, from
 * what the outcome carries of the order, and announces the decision.
 *
 * An outcome that finds its order already decided the same way announces that decision again
 * rather than nothing: notification records one notification per decision whatever it receives
 * twice, and an outcome the order service of an earlier version applied, which that version's
 * notification had not told yet, still reaches the student (docs/operations.md, Upgrading).
 * @module
 */
import { type EventHandler, orderEventFields } from "../shared/consumer.ts";
import { EventType } from "../shared/topology.ts";
import {
  type InventoryOutcome,
  ORDER_EXPIRED_REASON,
  orderConfirmed,
  orderRejected,
} from "../shared/events.ts";
import type { Logger } from "../shared/log.ts";
import {
  adoptOrder,
  changeStatus,
  getOrder,
  type OrderFacts,
  orderStatusChanges,
} from "./orders.ts";

/** Creates the handler of both inventory outcomes. */
export function handleInventoryOutcome(log: Logger): EventHandler<InventoryOutcome> {
  return async function decideOrder(tx, event, context) {
    const fields = orderEventFields(event.order_id, event, context);
    if (event.event_type === EventType.InventoryFailed && event.reason === ORDER_EXPIRED_REASON) {
      return () => log.info("skipped failure of an order past its deadline: it expires", fields);
    }
    const change = event.event_type === EventType.InventoryReserved
      ? { from: "PENDING", to: "CONFIRMED" } as const
      : { from: "PENDING", to: "REJECTED", reason: event.reason } as const;
    const announce = (order: OrderFacts) =>
      context.publish(
        change.to === "CONFIRMED" ? orderConfirmed(order) : orderRejected(order, change.reason),
      );
    const decided = await changeStatus(tx, event.order_id, change);
    if (decided) {
      announce(decided);
      return () => {
        orderStatusChanges.inc({ from: change.from, to: change.to });
        log.info("updated order status", { ...fields, status: change.to });
      };
    }
    const order = await getOrder(tx, event.order_id);
    if (!order && event.user_id && event.items) {
      const facts = { order_id: event.order_id, user_id: event.user_id, items: event.items };
      await adoptOrder(tx, facts, { status: change.to, reason: change.reason });
      announce(facts);
      return () => log.info("decided an order placed by hand", { ...fields, status: change.to });
    }
    if (order?.status === change.to) {
      announce(order);
      return () => log.info("announced decision again", { ...fields, status: change.to });
    }
    return () =>
      log.info("skipped outcome of an order that is not pending here", {
        ...fields,
        status: order?.status ?? "unknown",
      });
  };
}
