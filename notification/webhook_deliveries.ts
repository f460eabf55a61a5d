/**
 * The webhook outbox: one delivery per notification, written in the transaction that records the
 * notification, the operations the sender runs on its rows (claim with a lease, mark delivered,
 * schedule the next attempt or give up), and its gauges. The body is fixed when the row is
 * written, so that every attempt of one notification carries the same body under the same
 * `webhook-id`.
 *
 * A row stays as long as its notification does: `GET /notifications` shows its state, and there is
 * one per notification, so the table grows no faster than the notifications the service keeps by
 * design. Its body, the bulk of it, is dropped once delivered, as nothing sends it again.
 * @module
 */
import type { Migration, Store, Tx } from "../shared/store.ts";
import { newId } from "../shared/ids.ts";
import { type Backlog, readBacklog, watchBacklog } from "../shared/backlog.ts";
import type { Notification } from "./notifications.ts";

export const WEBHOOK_DELIVERIES_MIGRATION: Migration = {
  name: "webhook_deliveries",
  sql: `CREATE TABLE webhook_deliveries (
    webhook_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    locked_until TEXT,
    last_error TEXT,
    delivered_at TEXT,
    UNIQUE (order_id, kind)
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending'`,
};

/** Where a delivery stands, as `GET /notifications` shows it. */
export type DeliveryStatus = "pending" | "delivered" | "failed";

/** A delivery as `GET /notifications` shows it beside its notification. */
export interface DeliveryState {
  webhook_id: string;
  status: DeliveryStatus;
  attempts: number;
  delivered_at?: string;
}

/** A claimed delivery: what one attempt sends. */
export interface ClaimedDelivery {
  webhook_id: string;
  body: string;
  /** Attempts started so far, this one included. */
  attempts: number;
  created_at: string;
  /** The lease this claim holds; marks of a failed attempt apply only while it is still this one. */
  locked_until: string;
}

/** The store topic a transaction that enqueued deliveries notifies on commit. */
export const WEBHOOK_TOPIC = "webhook_deliveries";

/** The Standard Webhooks event type of each kind of notification. */
const EVENT_TYPES: Record<Notification["kind"], string> = {
  order_confirmed: "order.confirmed",
  order_rejected: "order.rejected",
  order_cancelled: "order.cancelled",
  order_expired: "order.expired",
};

/**
 * The body every attempt of `notification`'s delivery sends: Standard Webhooks' `type`,
 * `timestamp` (when the notification was recorded, ISO 8601) and `data`.
 */
export function deliveryBody(notification: Notification): string {
  const { order_id, user_id, kind, message, created_at } = notification;
  return JSON.stringify({
    type: EVENT_TYPES[kind],
    timestamp: created_at,
    data: { order_id, user_id, kind, message, created_at },
  });
}

/**
 * Adds the pending delivery of each of `notifications`, due now, in one statement. Must run in the
 * transaction that records them; its commit wakes the sender (see {@linkcode WEBHOOK_TOPIC}).
 * @returns their `webhook-id`s, in order
 */
export async function enqueueDeliveries(tx: Tx, notifications: Notification[]): Promise<string[]> {
  if (notifications.length === 0) return [];
  const webhookIds = notifications.map(() => `msg_${newId()}`);
  tx.notify(WEBHOOK_TOPIC);
  await tx.run(
    `INSERT INTO webhook_deliveries
       (webhook_id, order_id, kind, body, status, created_at, next_attempt_at)
     VALUES ${notifications.map(() => "(?, ?, ?, ?, 'pending', ?, ?)").join(", ")}`,
    ...notifications.flatMap((notification, index) => [
      webhookIds[index],
      notification.order_id,
      notification.kind,
      deliveryBody(notification),
      notification.created_at,
      notification.created_at,
    ]),
  );
  return webhookIds;
}

/** Options for {@linkcode claimDeliveries}. */
export interface ClaimOptions {
  /** The most deliveries to claim. */
  limit: number;
  /** The current time, in milliseconds since the epoch. */
  now: number;
  /** How long the claim keeps other senders off, in milliseconds: longer than an attempt. */
  leaseMs: number;
}

/**
 * Claims up to `limit` pending deliveries that are due and not leased, the longest due first:
 * leases them until `now + leaseMs` and counts the attempt. On PostgreSQL rows another instance is
 * claiming are skipped, and the lease keeps them off once this transaction ends; on SQLite one
 * process owns the file.
 */
export function claimDeliveries(tx: Tx, options: ClaimOptions): Promise<ClaimedDelivery[]> {
  const { limit, now, leaseMs } = options;
  const at = new Date(now).toISOString();
  return tx.all<ClaimedDelivery>(
    `UPDATE webhook_deliveries SET locked_until = ?, attempts = attempts + 1
     WHERE webhook_id IN (
       SELECT webhook_id FROM webhook_deliveries
       WHERE status = 'pending' AND next_attempt_at <= ?
         AND (locked_until IS NULL OR locked_until <= ?)
       ORDER BY next_attempt_at LIMIT ?${tx.dialect === "postgres" ? " FOR UPDATE SKIP LOCKED" : ""}
     )
     RETURNING webhook_id, body, attempts, created_at, locked_until`,
    new Date(now + leaseMs).toISOString(),
    at,
    at,
    limit,
  );
}

/**
 * Ends the leases of every pending delivery: at the start of a service on SQLite, where no other
 * process can hold one, so that a delivery a crash left in flight is sent again at once.
 */
export async function releaseLeases(tx: Tx): Promise<number> {
  return await tx.run(
    "UPDATE webhook_deliveries SET locked_until = NULL WHERE status = 'pending' AND locked_until IS NOT NULL",
  );
}

/**
 * Marks a delivery delivered (whoever holds its lease now: the receiver has it) and drops its body.
 * @returns false when it was no longer pending
 */
export async function markDelivered(tx: Tx, webhookId: string, now: number): Promise<boolean> {
  return await tx.run(
    `UPDATE webhook_deliveries
     SET status = 'delivered', delivered_at = ?, locked_until = NULL, last_error = NULL, body = NULL
     WHERE webhook_id = ? AND status = 'pending'`,
    new Date(now).toISOString(),
    webhookId,
  ) === 1;
}

/**
 * Records a failed attempt of a claimed delivery: due again at `retryAt`, or `failed` when
 * `retryAt` is undefined; `retryAt` equal to `now` with no error gives an interrupted attempt back.
 * Applies only while `claim`'s lease is the row's: a sender that lost its lease leaves the row to
 * the one that took it.
 * @returns false when the lease was lost or the delivery is no longer pending
 */
export async function markAttemptFailed(
  tx: Tx,
  claim: Pick<ClaimedDelivery, "webhook_id" | "locked_until">,
  outcome: { retryAt?: number; error: string },
): Promise<boolean> {
  const { retryAt, error } = outcome;
  return await tx.run(
    `UPDATE webhook_deliveries
     SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at), locked_until = NULL,
       last_error = ?
     WHERE webhook_id = ? AND status = 'pending' AND locked_until = ?`,
    retryAt === undefined ? "failed" : "pending",
    retryAt === undefined ? null : new Date(retryAt).toISOString(),
    error.slice(0, 500),
    claim.webhook_id,
    claim.locked_until,
  ) === 1;
}

/** Reports the deliveries at each scrape: how many are pending, and the age of the oldest, in seconds. */
export function watchWebhookDeliveries(store: Store): void {
  watchBacklog(store, {
    count: {
      name: "campus_food_webhook_pending",
      help: "Webhook deliveries not yet delivered or failed",
    },
    oldestAge: {
      name: "campus_food_webhook_oldest_pending_age_seconds",
      help: "Age of the oldest pending webhook delivery's notification, 0 when none is pending",
    },
    read: readDeliveryBacklog,
  });
}

/** How many deliveries are pending, and when the oldest of them was recorded. */
export function readDeliveryBacklog(tx: Tx): Promise<Backlog> {
  return readBacklog(tx, "webhook_deliveries WHERE status = 'pending'");
}

/**
 * An index of the deliveries not delivered, by status and age: the console counts and lists the
 * pending and the failed every second, and a scan of every delivery ever made would grow with the
 * notifications kept. Partial, so it holds only the few still open.
 */
export const WEBHOOK_DELIVERIES_OPEN_MIGRATION: Migration = {
  name: "webhook_deliveries_open",
  sql: `CREATE INDEX webhook_deliveries_open ON webhook_deliveries (status, created_at)
    WHERE status <> 'delivered'`,
};

/** A delivery not delivered yet, as an operator sees it. */
export interface OpenDelivery {
  webhook_id: string;
  order_id: string;
  kind: Notification["kind"];
  status: Exclude<DeliveryStatus, "delivered">;
  attempts: number;
  created_at: string;
  next_attempt_at: string;
  /** Why the last attempt failed, if one did. */
  last_error?: string;
}

/** The deliveries of one status, newest first, and how many pending and failed there are in all. */
export interface DeliveryListing {
  counts: { pending: number; failed: number };
  deliveries: OpenDelivery[];
}

/** The most deliveries {@linkcode listDeliveries} returns. */
export const DELIVERY_LIST_LIMIT = 100;

/**
 * The newest `status` deliveries (at most {@linkcode DELIVERY_LIST_LIMIT}), with the counts of
 * pending and failed ones: what the console shows of webhook delivery.
 */
export async function listDeliveries(
  tx: Tx,
  status: OpenDelivery["status"],
): Promise<DeliveryListing> {
  const counted = await tx.all<{ status: string; count: number }>(
    `SELECT status, COUNT(*) AS count FROM webhook_deliveries
     WHERE status <> 'delivered' GROUP BY status`,
  );
  const counts = { pending: 0, failed: 0 };
  for (const row of counted) counts[row.status as OpenDelivery["status"]] = Number(row.count);
  // `status <> 'delivered'` repeats the index's condition, so that a prepared query may use it.
  const rows = await tx.all<OpenDelivery & { last_error: string | null }>(
    `SELECT webhook_id, order_id, kind, status, attempts, created_at, next_attempt_at, last_error
     FROM webhook_deliveries WHERE status <> 'delivered' AND status = ?
     ORDER BY created_at DESC LIMIT ?`,
    status,
    DELIVERY_LIST_LIMIT,
  );
  const deliveries = rows.map(({ last_error, ...row }) => ({
    ...row,
    attempts: Number(row.attempts),
    ...last_error === null ? {} : { last_error },
  }));
  return { counts, deliveries };
}

/** What {@linkcode retryDelivery} did: retried it, or found it in another status, or not at all. */
export type RetryOutcome =
  | { retried: true }
  | { retried: false; status?: DeliveryStatus };

/**
 * Gives a failed delivery another go: pending again and due `now`, its attempts and last error
 * kept. Its notification is a day old by then, so one more failed attempt fails it again (see
 * `webhook_backoff.ts`); the commit wakes the sender (see {@linkcode WEBHOOK_TOPIC}).
 * @returns `retried: false` with its status when it is not failed, without one when unknown
 */
export async function retryDelivery(tx: Tx, webhookId: string, now: number): Promise<RetryOutcome> {
  const changed = await tx.run(
    `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, locked_until = NULL
     WHERE webhook_id = ? AND status = 'failed'`,
    new Date(now).toISOString(),
    webhookId,
  );
  if (changed === 1) {
    tx.notify(WEBHOOK_TOPIC);
    return { retried: true };
  }
  const row = await tx.get<{ status: DeliveryStatus }>(
    "SELECT status FROM webhook_deliveries WHERE webhook_id = ?",
    webhookId,
  );
  return row ? { retried: false, status: row.status } : { retried: false };
}
