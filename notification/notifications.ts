/**
 * Notification's table: the messages sent to students, at most one of each kind per order (the
 * primary key on `order_id` and `kind`), and never one that an earlier one made untrue.
 * @module
 */
import { lockForTransaction, type Migration, type Tx } from "../shared/store.ts";
import type { OrderItem } from "../shared/events.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";
import {
  type DeliveryState,
  enqueueDeliveries,
  WEBHOOK_DELIVERIES_MIGRATION,
  WEBHOOK_DELIVERIES_OPEN_MIGRATION,
} from "./webhook_deliveries.ts";

export const NOTIFICATION_MIGRATIONS: Migration[] = [
  INBOX_MIGRATION,
  {
    name: "notifications",
    sql: `CREATE TABLE notifications (
      order_id TEXT PRIMARY KEY,
      user_id TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('order_confirmed', 'order_rejected')),
      message TEXT NOT NULL,
      created_at TEXT NOT NULL
    );
    CREATE INDEX notifications_by_user ON notifications (user_id, created_at)`,
  },
  INBOX_RECEIVED_AT_MIGRATION,
  {
    // An order may now be told two things (confirmed, then cancelled): one row per order and kind.
    // SQLite cannot change a primary key in place: the table is copied into a new one.
    name: "notifications_per_kind",
    sql: `CREATE TABLE notifications_v2 (
      order_id TEXT NOT NULL,
      user_id TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (
        kind IN ('order_confirmed', 'order_rejected', 'order_cancelled', 'order_expired')
      ),
      message TEXT NOT NULL,
      created_at TEXT NOT NULL,
      PRIMARY KEY (order_id, kind)
    );
    INSERT INTO notifications_v2 (order_id, user_id, kind, message, created_at)
      SELECT order_id, user_id, kind, message, created_at FROM notifications;
    DROP TABLE notifications;
    ALTER TABLE notifications_v2 RENAME TO notifications;
    CREATE INDEX notifications_by_user ON notifications (user_id, created_at)`,
    postgres: `ALTER TABLE notifications DROP CONSTRAINT notifications_pkey;
    ALTER TABLE notifications ADD PRIMARY KEY (order_id, kind);
    ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
    ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check
      CHECK (kind IN ('order_confirmed', 'order_rejected', 'order_cancelled', 'order_expired'))`,
  },
  WEBHOOK_DELIVERIES_MIGRATION,
  WEBHOOK_DELIVERIES_OPEN_MIGRATION,
];

/** What a notification tells the student. */
export type NotificationKind =
  | "order_confirmed"
  | "order_rejected"
  | "order_cancelled"
  | "order_expired";

/** A notification as `GET /notifications` lists it. */
export interface Notification {
  order_id: string;
  user_id: string;
  kind: NotificationKind;
  message: string;
  created_at: string;
}

/**
 * The kinds that, once an order was told one of them, make a notification of `kind` untrue or
 * old news: an outcome after another outcome or after the order was called off, a cancellation
 * after an expiry and the other way round. (The same kind twice the primary key refuses.)
 */
const SUPERSEDED_BY: Record<NotificationKind, NotificationKind[]> = {
  order_confirmed: ["order_rejected", "order_cancelled", "order_expired"],
  order_rejected: ["order_confirmed", "order_cancelled", "order_expired"],
  order_cancelled: ["order_expired"],
  order_expired: ["order_cancelled"],
};

/**
 * Takes, until `tx` ends, the lock of each of `orderIds`' notifications: on PostgreSQL an instance
 * recording a notification for an order waits for another one doing the same, so that each sees
 * what the other recorded (see {@linkcode recordNotification}). Handlers take it first.
 */
export function lockNotifications(tx: Tx, orderIds: string[]): Promise<void> {
  return lockForTransaction(tx, orderIds.map((orderId) => `notifications ${orderId}`));
}

/** The SQL that is true when the notification `n` supersedes the new one `v`: SUPERSEDED_BY. */
const SUPERSEDED = Object.entries(SUPERSEDED_BY).map(([kind, by]) =>
  `(v.kind = '${kind}' AND n.kind IN (${by.map((other) => `'${other}'`).join(", ")}))`
).join(" OR ");

/**
 * Records `notification` unless its order was already told this or something that supersedes it.
 * On PostgreSQL, two instances recording for one order must hold its lock
 * ({@linkcode lockNotifications}), or both could find nothing and record.
 * @returns false when nothing was recorded
 */
export async function recordNotification(tx: Tx, notification: Notification): Promise<boolean> {
  const [recorded] = await recordNotifications(tx, [notification]);
  return recorded;
}

/**
 * Records each of `notifications` as {@linkcode recordNotification} does, in one statement: at
 * most one per order, since a notification of the batch is not weighed against another one.
 * @returns for each, in order, whether it was recorded
 */
export async function recordNotifications(
  tx: Tx,
  notifications: Notification[],
): Promise<boolean[]> {
  if (notifications.length === 0) return [];
  // SQLite needs a WHERE in INSERT … SELECT before ON CONFLICT, which the check provides. It is a
  // subquery with a LIMIT, not a NOT EXISTS: PostgreSQL turns NOT EXISTS into a join, and the
  // plan it caches for a prepared statement while the table is small hashes the whole table,
  // at every batch, however large it grew. A LIMIT keeps it a lookup by order id.
  const rows = await tx.all<{ order_id: string; kind: string }>(
    `WITH v (order_id, user_id, kind, message, created_at) AS (
       VALUES ${notifications.map(() => "(?, ?, ?, ?, ?)").join(", ")}
     )
     INSERT INTO notifications (order_id, user_id, kind, message, created_at)
     SELECT order_id, user_id, kind, message, created_at FROM v
     WHERE (
       SELECT 1 FROM notifications n WHERE n.order_id = v.order_id AND (${SUPERSEDED}) LIMIT 1
     ) IS NULL
     ON CONFLICT DO NOTHING RETURNING order_id, kind`,
    ...notifications.flatMap((n) => [n.order_id, n.user_id, n.kind, n.message, n.created_at]),
  );
  const recorded = new Set(rows.map((row) => `${row.order_id} ${row.kind}`));
  return notifications.map((n) => recorded.has(`${n.order_id} ${n.kind}`));
}

/** What a notification message says of an order. */
export interface OrderSummary {
  order_id: string;
  user_id?: string;
  items?: OrderItem[];
  /** Why it was rejected. */
  reason?: string;
}

/** The message of a notification of `kind` about `order`. */
export function notificationMessage(kind: NotificationKind, order: OrderSummary): string {
  const about = `order ${order.order_id} for ${order.user_id ?? "unknown user"}`;
  const food = order.items?.map((item) => `${item.qty}× ${item.sku}`).join(", ");
  switch (kind) {
    case "order_confirmed":
      return `${about} confirmed${food ? `: ${food}` : ""}`;
    case "order_rejected":
      return `${about} rejected: ${order.reason}`;
    case "order_cancelled":
      return `${about} cancelled`;
    case "order_expired":
      return `${about} expired: the kitchen did not answer in time`;
  }
}

/** A notification with the state of its webhook delivery, when it has one. */
export interface ListedNotification extends Notification {
  delivery?: DeliveryState;
}

/** Options for {@linkcode listNotifications}. */
export interface ListOptions {
  /** Add each notification's webhook delivery, where it has one. @default {false} */
  withDelivery?: boolean;
}

/**
 * The notifications of one order or one user, oldest first; of two recorded at the same instant,
 * the outcome comes before the cancellation.
 */
export async function listNotifications(
  tx: Tx,
  filter: { order_id?: string; user_id?: string },
  options: ListOptions = {},
): Promise<ListedNotification[]> {
  const [column, value] = filter.order_id !== undefined
    ? ["order_id", filter.order_id]
    : ["user_id", filter.user_id ?? ""];
  const rows = await tx.all<Notification & Partial<Record<`delivery_${string}`, unknown>>>(
    `SELECT n.order_id, n.user_id, n.kind, n.message, n.created_at${
      options.withDelivery
        ? `, d.webhook_id AS delivery_webhook_id, d.status AS delivery_status,
           d.attempts AS delivery_attempts, d.delivered_at AS delivery_delivered_at`
        : ""
    }
     FROM notifications n${
      options.withDelivery
        ? " LEFT JOIN webhook_deliveries d ON d.order_id = n.order_id AND d.kind = n.kind"
        : ""
    }
     WHERE n.${column} = ?
     ORDER BY n.created_at, n.order_id,
       CASE WHEN n.kind IN ('order_cancelled', 'order_expired') THEN 1 ELSE 0 END
     LIMIT 1000`,
    value,
  );
  return rows.map((row) => {
    const { order_id, user_id, kind, message, created_at } = row;
    const listed: ListedNotification = { order_id, user_id, kind, message, created_at };
    if (typeof row.delivery_webhook_id === "string") {
      listed.delivery = {
        webhook_id: row.delivery_webhook_id,
        status: row.delivery_status as DeliveryState["status"],
        attempts: Number(row.delivery_attempts),
        ...typeof row.delivery_delivered_at === "string"
          ? { delivered_at: row.delivery_delivered_at }
          : {},
      };
    }
    return listed;
  });
}

/** What the student is told, and about which order. */
export interface Notice {
  kind: NotificationKind;
  order: OrderSummary;
}

/** Options for {@linkcode notifyOrder} and {@linkcode notifyOrders}. */
export interface NotifyOptions {
  /**
   * Also write each notification's pending webhook delivery: the service does when
   * `NOTIFY_WEBHOOK_URL` is set. @default {false}
   */
  webhook?: boolean;
}

/**
 * Records the notification of `notice.kind` about `notice.order`, dated now, unless superseded
 * (see {@linkcode recordNotification}), and with `options.webhook` its pending delivery, in the
 * same transaction: every notification recorded is delivered, whatever event caused it.
 * @returns its message, to log once the transaction commits; undefined when nothing was recorded
 */
export async function notifyOrder(
  tx: Tx,
  notice: Notice,
  options: NotifyOptions = {},
): Promise<string | undefined> {
  const [message] = await notifyOrders(tx, [notice], options);
  return message;
}

/**
 * Notifies each order of `notices` as {@linkcode notifyOrder} does, in two statements for all: at
 * most one per order.
 * @returns for each, in order, its message, or undefined when nothing was recorded
 */
export async function notifyOrders(
  tx: Tx,
  notices: readonly Notice[],
  options: NotifyOptions = {},
): Promise<Array<string | undefined>> {
  const createdAt = new Date().toISOString();
  const notifications = notices.map(({ kind, order }): Notification => ({
    order_id: order.order_id,
    user_id: order.user_id ?? "unknown user",
    kind,
    message: notificationMessage(kind, order),
    created_at: createdAt,
  }));
  const recorded = await recordNotifications(tx, notifications);
  if (options.webhook) {
    await enqueueDeliveries(tx, notifications.filter((_, index) => recorded[index]));
  }
  return notifications.map((notification, index) =>
    recorded[index] ? notification.message : undefined
  );
}
