/**
 * The latest orders, whoever placed them, with each one's status and last notification.
 *
 * The order API has no list of orders, so the console learns of new ones from a tap: a private,
 * exclusive queue bound to `OrderPlaced` and `OrderCancelled` that receives a copy of each and
 * takes nothing from the services. The status and the notification are then read from the order
 * and notification APIs, again at each refresh while the two disagree (an order still PENDING, a
 * notification not yet sent or parked in a DLQ): a row settles once the student was told of the
 * status the order is in, as guarantee 7 promises.
 * @module
 */
import type { Broker } from "../../../shared/broker.ts";
import type { BrokerTools, Tap } from "../broker_tools.ts";
import { orderCancelledSchema, orderPlacedSchema, parseEvent } from "../../../shared/events.ts";
import type { OrderItem } from "../../../shared/events.ts";
import { EventType } from "../../../shared/topology.ts";
import { describeError, type Logger } from "../../../shared/log.ts";
import { getJson, readService } from "./probes.ts";

/** One order as the page shows it. */
export interface OrderRow {
  order_id: string;
  user_id: string;
  items: OrderItem[];
  /** PENDING, CONFIRMED, REJECTED, CANCELLED or EXPIRED; UNKNOWN until first read. */
  status: string;
  reason?: string;
  /** The kind of the last notification sent to the student about it, if any. */
  notified?: string;
  created_at: string;
}

/** An order id as the order service makes them: a ULID, 26 characters of Crockford's base 32. */
const ORDER_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * True when `id` is an order id the order service could have made. The console puts ids into
 * URLs and form actions, and an id is what anyone who may publish `OrderPlaced` says it is.
 */
export function isOrderId(id: unknown): id is string {
  return typeof id === "string" && ORDER_ID.test(id);
}

/** The notification that tells a student of each status. */
const TOLD: Record<string, string> = {
  CONFIRMED: "order_confirmed",
  REJECTED: "order_rejected",
  CANCELLED: "order_cancelled",
  EXPIRED: "order_expired",
};

/** True once the student was told of the status the order is in. */
export function isSettled(row: OrderRow): boolean {
  return row.notified !== undefined && TOLD[row.status] === row.notified;
}

/** Where the services answer now, if they run. */
export type ServiceUrls = (name: "order" | "notification") => string | undefined;

/** Options for {@linkcode watchLatestOrders}. */
export interface LatestOrdersOptions {
  log: Logger;
  /** How many orders to keep. @default {10} */
  size?: number;
  /** The bearer token the order and notification APIs are read with, if they want one. */
  token?: string;
}

/** The latest orders; see {@linkcode watchLatestOrders}. */
export interface LatestOrders {
  /** Newest first. */
  readonly rows: readonly OrderRow[];
  /** Shows an order at once: one the console placed itself, before the tap brings it. */
  add(row: OrderRow): void;
  /** Reads the order again at the next refresh (after a cancel, say). */
  touch(orderId: string): void;
  /** Takes in what the tap brought and reads every unsettled row again. */
  refresh(urls: ServiceUrls): Promise<void>;
  close(): Promise<void>;
}

/**
 * Keeps the latest orders, tapped through `tools`. The tap is opened again whenever `broker`, the
 * console's connection to the same broker, reconnected: an outage that cut one cut the other.
 */
export function watchLatestOrders(
  connections: { broker: Broker; tools: BrokerTools },
  options: LatestOrdersOptions,
): LatestOrders {
  const { broker, tools } = connections;
  const { log, size = 10, token } = options;
  const get = (url: string) => getJson(url, { token });
  let rows: OrderRow[] = [];
  let tap: Tap | undefined;
  // A tap lives on one connection: after a reconnect a new one is needed.
  let tapLost = true;
  broker.onConnect(() => tapLost = true);
  const stale = new Set<string>();

  function add(row: OrderRow): void {
    if (rows.some((known) => known.order_id === row.order_id)) return;
    rows = [row, ...rows].slice(0, size);
  }

  async function openTap(): Promise<void> {
    if (!broker.connected || (tap && !tapLost)) return;
    tapLost = false;
    await tap?.close();
    try {
      tap = await tools.tap([EventType.OrderPlaced, EventType.OrderCancelled]);
    } catch (error) {
      tapLost = true;
      log.warn("cannot watch new orders", { error: describeError(error) });
    }
  }

  function takeTapped(): void {
    // Drained at each refresh, so that the tap holds only what came since the last.
    for (const delivery of tap?.messages.splice(0) ?? []) {
      if (delivery.type === EventType.OrderCancelled) {
        const parsed = parseEvent(delivery.body, orderCancelledSchema);
        if (parsed.ok) stale.add(parsed.event.order_id);
        continue;
      }
      const parsed = parseEvent(delivery.body, orderPlacedSchema);
      if (!parsed.ok) continue;
      const { order_id, user_id, items, created_at = "" } = parsed.event.order;
      // Not an order the order service made: nothing to read, nothing to cancel.
      if (!isOrderId(order_id)) continue;
      add({ order_id, user_id, items, created_at, status: "UNKNOWN" });
    }
  }

  return {
    get rows() {
      return rows;
    },
    add,
    touch: (orderId) => stale.add(orderId),
    async refresh(urls) {
      await openTap();
      takeTapped();
      const due = rows.filter((row) => !isSettled(row) || stale.has(row.order_id));
      stale.clear();
      const fresh = await Promise.all(due.map((row) => reread(row, { urls, get })));
      const byId = new Map(fresh.map((row) => [row.order_id, row]));
      rows = rows.map((row) => byId.get(row.order_id) ?? row);
    },
    async close() {
      await tap?.close();
    },
  };
}

/** What the order and notification APIs say of `row` now; what does not answer stays as it was. */
async function reread(
  row: OrderRow,
  apis: { urls: ServiceUrls; get: typeof getJson },
): Promise<OrderRow> {
  const { urls, get } = apis;
  const [order, told] = await Promise.all([
    readService(urls("order"), `/orders/${encodeURIComponent(row.order_id)}`, get)
      .catch(() => undefined),
    readService(
      urls("notification"),
      `/notifications?order_id=${encodeURIComponent(row.order_id)}`,
      get,
    )
      .catch(() => undefined),
  ]);
  const next = { ...row };
  if (order?.status === 200) {
    const { status, reason } = order.body as { status: string; reason?: string };
    Object.assign(next, { status, reason });
  }
  if (Array.isArray(told?.body)) {
    next.notified = (told.body.at(-1) as { kind?: string } | undefined)?.kind;
  }
  return next;
}
