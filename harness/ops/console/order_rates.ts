/**
 * Orders per second, from the order service's `/metrics`: the 202s of `POST /order` (placed) and
 * `order_status_changes_total` by the status entered (confirmed, rejected, cancelled, expired).
 * @module
 */
import { metricSample } from "../../lib/http_probes.ts";

/** How many orders reached each stage, or how many per second. */
export interface OrderCounts {
  placed: number;
  confirmed: number;
  rejected: number;
  cancelled: number;
  expired: number;
}

/** The stages, in the order the page shows them. */
export const STAGES: ReadonlyArray<keyof OrderCounts> = [
  "placed",
  "confirmed",
  "rejected",
  "cancelled",
  "expired",
];

const REQUESTS = "campus_food_http_requests_total";
const STATUS_CHANGES = "campus_food_order_status_changes_total";

/** Reads the order counters out of `text`, the Prometheus text format of the order service. */
export function countOrders(text: string): OrderCounts {
  // An order is placed by POST /order or its alias POST /orders, answered 202.
  const placed = (route: string) =>
    metricSample(text, REQUESTS, { method: "POST", route, status: "202" }) ?? 0;
  const entered = (status: string) => metricSample(text, STATUS_CHANGES, { to: status }) ?? 0;
  return {
    placed: placed("/order") + placed("/orders"),
    confirmed: entered("CONFIRMED"),
    rejected: entered("REJECTED"),
    cancelled: entered("CANCELLED"),
    expired: entered("EXPIRED"),
  };
}

/** A reading of the counters at `t` (milliseconds). */
export interface CountsAt {
  t: number;
  counts: OrderCounts;
}

/**
 * The rate of each counter between two readings, per second. A counter that went down was reset
 * (the service restarted), so all it counted since is new.
 */
export function ratesBetween(older: CountsAt, newer: CountsAt): OrderCounts {
  const seconds = Math.max(0.001, (newer.t - older.t) / 1000);
  const rates = { ...newer.counts };
  for (const stage of STAGES) {
    const before = older.counts[stage];
    const now = newer.counts[stage];
    rates[stage] = (now >= before ? now - before : now) / seconds;
  }
  return rates;
}
