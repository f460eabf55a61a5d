/**
 * What each order led to, as the services show it: its status, its reservation, its
 * notifications recorded and sent, and its outcome events on a tap. What the scenarios count.
 * @module
 */
import { mapLimit } from "./async.ts";
import type { Tap } from "../ops/broker_tools.ts";
import { getJson } from "./http_probes.ts";
import type { ServiceName } from "./service_process.ts";
import type { Stack } from "./stack.ts";

/** What one order led to. */
export interface OrderEffects {
  order_id: string;
  /** The order service's status, undefined when it does not know the order. */
  status?: string;
  /** Why it was rejected or expired, as the order service says. */
  reason?: string;
  /** Reservations inventory shows for it (0 or 1). */
  reservations: number;
  /** Notifications recorded for it. */
  notifications: number;
  /** Their kinds, oldest first. */
  notificationKinds: string[];
  /** Its reservation as inventory shows it, if any. */
  reservation?: { status: string; items: Array<{ sku: string; qty: number }> };
  /** When the order was placed and last changed, as the order service shows them. */
  createdAt?: string;
  updatedAt?: string;
  /** Notifications sent: the notification service's log lines with the message. */
  sent: number;
  /** Distinct outcome events on the tap, by `event_id`. */
  outcomes: number;
  /** Outcome messages on the tap, counting a republished copy of the same event. */
  outcomeCopies: number;
}

/**
 * An accepted order the system lost: not decided (CONFIRMED or REJECTED), or decided without its
 * reservation or its notification.
 */
export function isLost(e: OrderEffects): boolean {
  return (e.status !== "CONFIRMED" && e.status !== "REJECTED") || e.reservations === 0 ||
    e.notifications === 0;
}

/** An order with an effect twice: a second reservation or a second notification. */
export function isDoubled(e: OrderEffects): boolean {
  return e.reservations > 1 || e.notifications > 1;
}

/** Options for {@linkcode countEffects}. */
export interface EffectsOptions {
  /** A tap on the outcome events, opened before the orders. @default {none: no outcomes counted} */
  outcomes?: Tap;
  /**
   * The base URL of the instance of `service` to ask about `orderId`, when there are several.
   * @default {the stack's own instance}
   */
  urlOf?: (service: ServiceName, orderId: string) => string;
}

/** Counts the effects of each of `orderIds`, asking at most 16 requests at a time. */
export async function countEffects(
  stack: Stack,
  orderIds: string[],
  options: EffectsOptions = {},
): Promise<OrderEffects[]> {
  const { outcomes, urlOf = (service) => stack.url(service) } = options;
  const byOrder = new Map<string, { events: Set<string>; copies: number }>();
  for (const message of outcomes?.messages ?? []) {
    const id = message.correlationId ?? "";
    const entry = byOrder.get(id) ?? { events: new Set(), copies: 0 };
    entry.events.add(message.messageId ?? "");
    entry.copies++;
    byOrder.set(id, entry);
  }
  const sentLog = stack.services.notification?.logs ?? [];
  const askOrder = options.urlOf !== undefined || stack.services.order !== undefined;
  return await mapLimit(orderIds, 16, async (orderId) => {
    const [order, reservation, notifications] = await Promise.all([
      askOrder ? getJson(`${urlOf("order", orderId)}/orders/${orderId}`) : undefined,
      getJson(`${urlOf("inventory", orderId)}/reservations/${orderId}`),
      getJson(`${urlOf("notification", orderId)}/notifications?order_id=${orderId}`),
    ]);
    const notified: Array<{ kind: string }> = Array.isArray(notifications.body)
      ? notifications.body
      : [];
    return {
      order_id: orderId,
      status: order?.status === 200 ? order.body.status : undefined,
      reason: order?.body?.reason,
      createdAt: order?.body?.created_at,
      updatedAt: order?.body?.updated_at,
      reservations: reservation.status === 200 ? 1 : 0,
      reservation: reservation.status === 200 ? reservation.body : undefined,
      notifications: notified.length,
      notificationKinds: notified.map((n) => n.kind),
      sent: sentLog.filter((line) => notificationSent(line)?.orderId === orderId).length,
      outcomes: byOrder.get(orderId)?.events.size ?? 0,
      outcomeCopies: byOrder.get(orderId)?.copies ?? 0,
    };
  });
}

/** A notification the notification service sent, as its log line says. */
export interface SentNotification {
  orderId: string;
  /** `order_confirmed`, `order_rejected`, `order_cancelled` or `order_expired`. */
  kind: string;
  /** When it was sent (the line was written after the commit), in epoch milliseconds. */
  atMs: number;
}

const SENT = /^order (\S+) for .+? (confirmed|rejected|cancelled|expired)(?::|$)/;

/**
 * The notification a notification service's JSON log line is the sending of (its message, about
 * the order the line names), or undefined for any other line.
 */
export function notificationSent(line: Record<string, unknown>): SentNotification | undefined {
  const match = SENT.exec(String(line.msg));
  if (!match || match[1] !== line.order_id) return undefined;
  return { orderId: match[1], kind: `order_${match[2]}`, atMs: Date.parse(String(line.time)) };
}
