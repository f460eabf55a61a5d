/**
 * The decision timeout: an order still PENDING `ORDER_DECISION_TIMEOUT` after it was placed
 * becomes EXPIRED, with an `OrderCancelled` (`reason: "expired"`) in the outbox in the same
 * transaction, so that the student is told and inventory never keeps stock for it. The
 * `OrderCancelled` continues the order's trace.
 *
 * The timer is the orders table itself: a sweep looks for PENDING orders older than the timeout
 * (through a partial index of the PENDING ones), so nothing is lost when the service restarts, and
 * orders that became due while it was down expire at its first sweep. On PostgreSQL the sweeps of
 * several instances skip each other's rows, and each order is expired once.
 * @module
 */
import type { Store } from "../shared/store.ts";
import { readBacklog, watchBacklog } from "../shared/backlog.ts";
import { CancelReason, orderCancelled } from "../shared/events.ts";
import { enqueueOutbox } from "../shared/outbox.ts";
import type { Logger } from "../shared/log.ts";
import { type Periodic, startPeriodic } from "../shared/periodic.ts";
import { type ExpiredOrder, expirePendingOrders, orderStatusChanges } from "./orders.ts";

/** Options for {@linkcode expireOverdueOrders}. */
export interface ExpireOptions {
  /** Orders expired per transaction. @default {100} */
  batchSize?: number;
  /** The current time in milliseconds since the epoch. @default {Date.now()} */
  now?: number;
}

/**
 * Expires every order that has been PENDING longer than `timeoutMs`, a batch per transaction.
 * @returns the orders this call expired
 */
export async function expireOverdueOrders(
  store: Store,
  timeoutMs: number,
  options: ExpireOptions = {},
): Promise<ExpiredOrder[]> {
  const { batchSize = 100, now = Date.now() } = options;
  if (!(timeoutMs > 0) || !(batchSize >= 1)) {
    throw new RangeError(
      `Cannot expire orders as timeoutMs and batchSize must be positive: current values are ${timeoutMs} and ${batchSize}`,
    );
  }
  const createdBefore = new Date(now - timeoutMs).toISOString();
  const reason = `no inventory outcome within ${describeMs(timeoutMs)}`;
  const expired: ExpiredOrder[] = [];
  while (true) {
    const batch = await store.transaction(async (tx) => {
      const orders = await expirePendingOrders(tx, createdBefore, { limit: batchSize, reason });
      await enqueueOutbox(
        tx,
        orders.map(({ traceparent, ...order }) => ({
          event: orderCancelled(order, {
            reason: CancelReason.expired,
            previousStatus: "PENDING",
          }),
          // Its publish joins the order's trace, under the request that placed it.
          ...(traceparent ? { headers: { traceparent } } : {}),
        })),
      );
      return orders;
    });
    expired.push(...batch);
    if (batch.length < batchSize) return expired;
  }
}

/** Options for {@linkcode startExpiry}. */
export interface ExpiryOptions {
  log: Logger;
}

/**
 * Sweeps for overdue orders for the life of the service: at start, then every tenth of
 * `timeoutMs` (between 100 ms and a second), so an order expires at most that late.
 */
export function startExpiry(store: Store, timeoutMs: number, options: ExpiryOptions): Periodic {
  const { log } = options;
  watchPendingOrders(store);
  // At 0 from the start, so that the first expiries show as an increase to an alert's increase().
  orderStatusChanges.inc({ from: "PENDING", to: "EXPIRED" }, 0);
  return startPeriodic(async function expireOrders() {
    const expired = await expireOverdueOrders(store, timeoutMs);
    if (expired.length === 0) return;
    orderStatusChanges.inc({ from: "PENDING", to: "EXPIRED" }, expired.length);
    for (const order of expired) {
      log.info("expired order", { order_id: order.order_id, timeout_ms: timeoutMs });
    }
  }, {
    intervalMs: Math.min(1000, Math.max(100, timeoutMs / 10)),
    log,
    name: "expire overdue orders",
  });
}

/**
 * Reports the orders not yet decided at each scrape: how many are PENDING and how long the oldest
 * has waited, in seconds. Its age is the symptom a student feels: normally seconds, and it grows
 * toward `ORDER_DECISION_TIMEOUT` while inventory's outcomes do not come.
 */
export function watchPendingOrders(store: Store): void {
  watchBacklog(store, {
    count: { name: "campus_food_orders_pending", help: "Orders PENDING, not yet decided" },
    oldestAge: {
      name: "campus_food_orders_oldest_pending_age_seconds",
      help: "Age of the oldest PENDING order, 0 when none is pending",
    },
    read: (tx) => readBacklog(tx, "orders WHERE status = 'PENDING'"),
  });
}

function describeMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
