/**
 * Notification's table: one message per order outcome, the primary key on `order_id` making a
 * second outcome event for the same order a no-op.
 * @module
 */
import type { Migration, Tx } from "../shared/store.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";

export const NOTIFICATION_MIGRATIONS: Migration[] = [INBOX_MIGRATION, {
  name: "notifications",
  sql: `CREATE TABLE notifications (
      order_id TEXT PRIMARY KEY,
      user_id TEXT NOT NULL,
      kind TEXT NOT NULL CHECK (kind IN ('order_confirmed', 'order_rejected')),
      message TEXT NOT NULL,
      created_at TEXT NOT NULL
    );
    CREATE INDEX notifications_by_user ON notifications (user_id, created_at)`,
}, INBOX_RECEIVED_AT_MIGRATION];

/** A notification as `GET /notifications` lists it. */
export interface Notification {
  order_id: string;
  user_id: string;
  kind: "order_confirmed" | "order_rejected";
  message: string;
  created_at: string;
}

/**
 * Records `notification` unless its order already has one.
 * @returns false when the order was notified before
 */
export async function recordNotification(tx: Tx, notification: Notification): Promise<boolean> {
  const { order_id, user_id, kind, message, created_at } = notification;
  const inserted = await tx.run(
    `INSERT INTO notifications (order_id, user_id, kind, message, created_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT DO NOTHING`,
    order_id,
    user_id,
    kind,
    message,
    created_at,
  );
  return inserted === 1;
}

/** The notifications of one order or one user, oldest first. */
export function listNotifications(
  tx: Tx,
  filter: { order_id?: string; user_id?: string },
): Promise<Notification[]> {
  const [column, value] = filter.order_id !== undefined
    ? ["order_id", filter.order_id]
    : ["user_id", filter.user_id ?? ""];
  return tx.all<Notification>(
    `SELECT order_id, user_id, kind, message, created_at FROM notifications WHERE ${column} = ?
     ORDER BY created_at, order_id LIMIT 1000`,
    value,
  );
}
