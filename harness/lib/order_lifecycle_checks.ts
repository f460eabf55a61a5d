/**
 * The checks of the order lifecycle that chaos and scale make once everything has settled: no
 * order is PENDING, expired orders expired on time, stock is conserved and held only by CONFIRMED
 * orders (guarantee 6), and the student heard of each status at most once, the last notification
 * saying the final status (guarantee 7).
 * @module
 */
import type { OrderEffects } from "./effects.ts";
import { tally } from "./format.ts";
import type { Report } from "./scenario.ts";
import type { CancelAnswer } from "./until_answered.ts";

/** What the checks need to know of one order. */
export interface SettledOrder {
  orderId: string;
  /** Its status at the order service. */
  status?: string;
  /** Its reservation at inventory. */
  reservation?: { status: string; items: Array<{ sku: string; qty: number }> };
  /** The kinds of its notifications, oldest first. */
  notifications: string[];
  createdAt?: string;
  updatedAt?: string;
}

/** What the checks need of what `countEffects()` found for one order. */
export function toSettledOrder(effects: OrderEffects): SettledOrder {
  return { ...effects, orderId: effects.order_id, notifications: effects.notificationKinds };
}

/** The notification of each final status. */
const NOTICE: Record<string, string> = {
  CONFIRMED: "order_confirmed",
  REJECTED: "order_rejected",
  CANCELLED: "order_cancelled",
  EXPIRED: "order_expired",
};

/** Options for {@linkcode checkLifecycle}. */
export interface LifecycleOptions {
  /** The stock every SKU started with, and what inventory has on hand now. */
  stock: { initial: Record<string, number>; onHand: Record<string, number> };
  /** ORDER_DECISION_TIMEOUT, in milliseconds. */
  decisionTimeoutMs: number;
  /** How late an order may expire beyond the timeout, in milliseconds (a dead order service). */
  expiryLateMs: number;
}

/** How many orders ended how, for the scenario's figures. */
export interface LifecycleCounts {
  byStatus: Record<string, number>;
  /** CANCELLED or EXPIRED orders whose student heard an outcome first. */
  outcomeThenCalledOff: number;
  /**
   * Of those, the EXPIRED ones: an outcome that reached notification while the order service
   * expired the order (the race that remains when an outcome is in flight at the deadline).
   */
  outcomeThenExpired: number;
}

/** Checks `orders` as the module doc says, recording each failure in `report`. */
export function checkLifecycle(
  report: Report,
  orders: SettledOrder[],
  options: LifecycleOptions,
): LifecycleCounts {
  const { stock, decisionTimeoutMs, expiryLateMs } = options;
  const statuses = orders.map((o) => o.status ?? "unknown");
  report.step(`final statuses: ${tally(statuses)}`);
  report.expect(
    statuses.every((status) => status in NOTICE),
    "every order CONFIRMED, REJECTED, CANCELLED or EXPIRED (none PENDING)",
    tally(statuses),
  );

  const expiredAfterS = orders.filter((o) => o.status === "EXPIRED").map((o) =>
    (Date.parse(o.updatedAt ?? "") - Date.parse(o.createdAt ?? "")) / 1000
  );
  const late = expiredAfterS.filter((s) =>
    !(s * 1000 >= decisionTimeoutMs && s * 1000 <= decisionTimeoutMs + expiryLateMs)
  );
  report.expect(
    late.length === 0,
    `every EXPIRED order expired ${decisionTimeoutMs / 1000}-${
      (decisionTimeoutMs + expiryLateMs) / 1000
    } s after it was placed`,
    `${late.length} outside, e.g. after ${late.slice(0, 3).join(", ")} s`,
  );

  const holding = orders.map((o) => `${o.status}/${o.reservation?.status ?? "none"}`);
  report.step(`order status / reservation: ${tally(holding)}`);
  report.expect(
    orders.every((o) => (o.status === "CONFIRMED") === (o.reservation?.status === "RESERVED")),
    "a RESERVED reservation for every CONFIRMED order and for no other",
    tally(holding.filter((h) => (h.startsWith("CONFIRMED/")) !== h.endsWith("/RESERVED"))),
  );
  const held: Record<string, number> = {};
  for (const o of orders.filter((o) => o.reservation?.status === "RESERVED")) {
    for (const { sku, qty } of o.reservation!.items) held[sku] = (held[sku] ?? 0) + qty;
  }
  const balance = Object.keys(stock.initial).map((sku) => {
    const onHand = stock.onHand[sku];
    const ok = stock.initial[sku] === onHand + (held[sku] ?? 0);
    report.expect(
      ok,
      `${sku}: initial ${stock.initial[sku]} = on hand + held by RESERVED`,
      `${onHand} + ${held[sku] ?? 0}`,
    );
    report.expect(onHand >= 0, `${sku} on hand never negative`, String(onHand));
    return `${sku} ${stock.initial[sku]} = ${onHand} + ${held[sku] ?? 0}`;
  });
  report.step(`stock (initial = on hand + held by RESERVED): ${balance.join(", ")}`);

  const told = orders.map((o) => o.notifications.join("+") || "none");
  report.step(`notifications per order: ${tally(told)}`);
  const untrue = orders.filter((o) => !toldTheTruth(o));
  report.expect(
    untrue.length === 0,
    "each kind of notification at most once per order, the last one saying its final status",
    untrue.slice(0, 3).map((o) => `${o.orderId} ${o.status}: ${o.notifications}`).join("; "),
  );
  const byStatus: Record<string, number> = {};
  for (const status of statuses) byStatus[status] = (byStatus[status] ?? 0) + 1;
  return {
    byStatus,
    outcomeThenCalledOff: orders.filter((o) => o.notifications.length === 2).length,
    outcomeThenExpired:
      orders.filter((o) => o.status === "EXPIRED" && o.notifications.length === 2).length,
  };
}

/**
 * Whether inventory and notification are done with `order`: it is decided, its reservation agrees
 * with its status (released once the order was called off), and the student was last told the
 * final status.
 */
export function hasSettled(order: SettledOrder): boolean {
  const { status, reservation, notifications } = order;
  return status !== undefined && status in NOTICE &&
    (reservation?.status === "RESERVED") === (status === "CONFIRMED") &&
    notifications.at(-1) === NOTICE[status];
}

/**
 * A CONFIRMED or REJECTED order was told exactly that; a CANCELLED or EXPIRED one was told that
 * last, and before it at most one outcome: the confirmation of an order cancelled after it, or an
 * outcome that reached notification before the cancellation that made the order service ignore it.
 */
function toldTheTruth(order: SettledOrder): boolean {
  const { status = "", notifications } = order;
  const last = notifications.at(-1);
  if (last !== NOTICE[status] || new Set(notifications).size !== notifications.length) return false;
  if (status === "CONFIRMED" || status === "REJECTED") return notifications.length === 1;
  return notifications.length === 1 ||
    (notifications.length === 2 &&
      ["order_confirmed", "order_rejected"].includes(notifications[0]));
}

/**
 * Checks that every cancellation was answered 202 CANCELLED, or 409 for an order that was
 * REJECTED or EXPIRED first.
 */
export function checkCancelAnswers(report: Report, answers: CancelAnswer[]): void {
  const seen = answers.map((answer) =>
    `${answer.status}${answer.orderStatus ? ` ${answer.orderStatus}` : ""}`
  );
  report.step(`cancellations asked: ${tally(seen)}`);
  report.expect(
    seen.every((answer) => /^(202 CANCELLED|409 (REJECTED|EXPIRED))$/.test(answer)),
    "every cancellation answered 202 CANCELLED, or 409 for a REJECTED or EXPIRED order",
    tally(seen),
  );
}
