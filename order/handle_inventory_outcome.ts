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
import {
  type AfterCommit,
  type BatchHandler,
  firstOfEach,
  orderEventFields,
} from "../shared/consumer.ts";
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
  changeStatuses,
  getOrder,
  type OrderFacts,
  orderStatusChanges,
} from "./orders.ts";

/** A decision about a PENDING order. */
type Decision =
  | { from: "PENDING"; to: "CONFIRMED"; reason?: undefined }
  | { from: "PENDING"; to: "REJECTED"; reason: string };

/** The decision an outcome asks for; none for inventory's "order expired". */
function decisionOf(event: InventoryOutcome): Decision | undefined {
  if (event.event_type === EventType.InventoryReserved) return { from: "PENDING", to: "CONFIRMED" };
  return event.reason === ORDER_EXPIRED_REASON
    ? undefined
    : { from: "PENDING", to: "REJECTED", reason: event.reason };
}

/**
 * Creates the handler of both inventory outcomes. The PENDING orders of a batch are decided in one
 * statement; an outcome whose order was not PENDING (or came twice in the batch) is then looked at
 * alone, which is rare.
 */
export function handleInventoryOutcome(log: Logger): BatchHandler<InventoryOutcome> {
  return async function decideOrders(tx, batch) {
    const decisions = batch.map(({ event }) => decisionOf(event));
    const changes = batch.flatMap(({ event }, index) => {
      const change = decisions[index];
      return change ? [{ orderId: event.order_id, change }] : [];
    });
    const decided = await changeStatuses(tx, firstOfEach(changes, ({ orderId }) => orderId));
    const afterCommit: AfterCommit[] = [];
    for (const [index, { event, context }] of batch.entries()) {
      const fields = orderEventFields(event.order_id, event, context);
      const change = decisions[index];
      if (!change) {
        afterCommit.push(() =>
          log.info("skipped failure of an order past its deadline: it expires", fields)
        );
        continue;
      }
      const announce = (order: OrderFacts) =>
        context.publish(
          change.to === "CONFIRMED" ? orderConfirmed(order) : orderRejected(order, change.reason),
        );
      const order = decided.get(event.order_id);
      if (order) {
        // A second outcome of this order in the batch finds it decided, as a later batch would.
        decided.delete(event.order_id);
        announce(order);
        afterCommit.push(() => {
          orderStatusChanges.inc({ from: change.from, to: change.to });
          log.info("updated order status", { ...fields, status: change.to });
        });
        continue;
      }
      const existing = await getOrder(tx, event.order_id);
      if (!existing && event.user_id && event.items) {
        const facts = { order_id: event.order_id, user_id: event.user_id, items: event.items };
        await adoptOrder(tx, facts, { status: change.to, reason: change.reason });
        announce(facts);
        afterCommit.push(() =>
          log.info("decided an order placed by hand", { ...fields, status: change.to })
        );
      } else if (existing?.status === change.to) {
        announce(existing);
        afterCommit.push(() =>
          log.info("announced decision again", { ...fields, status: change.to })
        );
      } else {
        afterCommit.push(() =>
          log.info("skipped outcome of an order that is not pending here", {
            ...fields,
            status: existing?.status ?? "unknown",
          })
        );
      }
    }
    return afterCommit;
  };
}
