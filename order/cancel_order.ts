/**
 * Cancelling an order: its status and its `OrderCancelled` event in the outbox, in one
 * transaction, so that inventory is always told to release what the order holds.
 * @module
 */
import type { Store } from "../shared/store.ts";
import { CancelReason, orderCancelled } from "../shared/events.ts";
import { enqueueOutbox } from "../shared/outbox.ts";
import { childTraceparent } from "../shared/traceparent.ts";
import { changeStatus, getOrder, type OrderView } from "./orders.ts";

/** What cancelling an order did. */
export type CancelResult =
  /** It was PENDING or CONFIRMED and is now CANCELLED; `from` says which. */
  | { kind: "cancelled"; order: OrderView; from: "PENDING" | "CONFIRMED" }
  /** It was CANCELLED before: nothing changed, and the answer is the same. */
  | { kind: "unchanged"; order: OrderView }
  /** It is REJECTED or EXPIRED, which cannot be cancelled. */
  | { kind: "conflict"; order: OrderView }
  | { kind: "not_found" };

/** Options for {@linkcode cancelOrder}. */
export interface CancelOrderOptions {
  /** The trace the `OrderCancelled` message carries. @default {a new trace} */
  traceparent?: string;
}

/** Cancels the order `orderId` if it is PENDING or CONFIRMED; see {@linkcode CancelResult}. */
export function cancelOrder(
  store: Store,
  orderId: string,
  options: CancelOrderOptions = {},
): Promise<CancelResult> {
  const { traceparent = childTraceparent() } = options;
  return store.transaction(async (tx): Promise<CancelResult> => {
    // Locked, so that an outcome or the expiry sweep racing this cancellation waits for it.
    const order = await getOrder(tx, orderId, { forUpdate: true });
    if (!order) return { kind: "not_found" };
    if (order.status === "CANCELLED") return { kind: "unchanged", order };
    if (order.status !== "PENDING" && order.status !== "CONFIRMED") {
      return { kind: "conflict", order };
    }
    const from = order.status;
    if (!await changeStatus(tx, orderId, { from, to: "CANCELLED" })) {
      throw new Error(`Cannot cancel order ${orderId} as its ${from} status changed under a lock`);
    }
    const event = orderCancelled(order, { reason: CancelReason.cancelled, previousStatus: from });
    await enqueueOutbox(tx, [{ event, headers: { traceparent } }]);
    return { kind: "cancelled", order: { ...order, status: "CANCELLED" }, from };
  });
}
