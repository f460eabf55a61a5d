/**
 * The order service's tables: orders with their status, and the idempotency keys of `POST /order`.
 * @module
 */
import type { Migration, Tx } from "../shared/store.ts";
import type { Order, OrderItem } from "../shared/events.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";
import { OUTBOX_MIGRATION } from "../shared/outbox.ts";
import type { RetentionRule } from "../shared/retention.ts";

export const ORDER_MIGRATIONS: Migration[] = [
  INBOX_MIGRATION,
  OUTBOX_MIGRATION,
  {
    name: "orders",
    sql: `CREATE TABLE orders (
      order_id TEXT PRIMARY KEY,
      user_id TEXT NOT NULL,
      items TEXT NOT NULL,
      status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
      reason TEXT,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    );
    CREATE TABLE idempotency_keys (
      idempotency_key TEXT PRIMARY KEY,
      request_hash TEXT NOT NULL,
      order_id TEXT NOT NULL,
      created_at TEXT NOT NULL
    )`,
  },
  INBOX_RECEIVED_AT_MIGRATION,
  {
    name: "idempotency_keys_created_at",
    sql: "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)",
  },
];

/**
 * `POST /order` forgets an `Idempotency-Key` `keepMs` after its first use: a retry that comes later
 * places a new order, as with Stripe's keys, which expire after 24 hours.
 */
export function idempotencyKeyRetention(keepMs: number): RetentionRule {
  return { table: "idempotency_keys", key: ["idempotency_key"], time: "created_at", keepMs };
}

export type OrderStatus = "PENDING" | "CONFIRMED" | "REJECTED";

/** An order as `GET /orders/{order_id}` shows it. */
export interface OrderView extends Order {
  status: OrderStatus;
  reason?: string;
  updated_at: string;
}

/** Inserts a new, pending order. */
export async function insertOrder(tx: Tx, order: Order): Promise<void> {
  await tx.run(
    `INSERT INTO orders (order_id, user_id, items, status, created_at, updated_at)
     VALUES (?, ?, ?, 'PENDING', ?, ?)`,
    order.order_id,
    order.user_id,
    JSON.stringify(order.items),
    order.created_at,
    order.created_at,
  );
}

/** The order `orderId`, if any. */
export async function getOrder(tx: Tx, orderId: string): Promise<OrderView | undefined> {
  const row = await tx.get<
    Omit<OrderView, "items" | "reason"> & { items: string; reason: string | null }
  >(
    "SELECT order_id, user_id, items, status, reason, created_at, updated_at FROM orders WHERE order_id = ?",
    orderId,
  );
  if (!row) return undefined;
  const { reason, items, ...rest } = row;
  return {
    order_id: rest.order_id,
    user_id: rest.user_id,
    items: JSON.parse(items) as OrderItem[],
    status: rest.status,
    ...(reason === null ? {} : { reason }),
    created_at: rest.created_at,
    updated_at: rest.updated_at,
  };
}

/**
 * Moves a pending order to its final status; an order already decided keeps its status.
 * @returns false when no pending order `orderId` exists
 */
export async function decideOrder(
  tx: Tx,
  orderId: string,
  outcome: { status: "CONFIRMED" | "REJECTED"; reason?: string },
): Promise<boolean> {
  const changed = await tx.run(
    "UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE order_id = ? AND status = 'PENDING'",
    outcome.status,
    outcome.reason ?? null,
    new Date().toISOString(),
    orderId,
  );
  return changed === 1;
}

/** The order and request hash an idempotency key was first used with, if any. */
export function findIdempotencyKey(
  tx: Tx,
  key: string,
): Promise<{ order_id: string; request_hash: string } | undefined> {
  return tx.get(
    "SELECT order_id, request_hash FROM idempotency_keys WHERE idempotency_key = ?",
    key,
  );
}

/**
 * Claims `key` for a new order `orderId` made from a request whose hash is `requestHash`. On
 * PostgreSQL a concurrent claim of the same key waits for the first to commit, then loses.
 * @returns false when the key was claimed before: the request is a retry, or a conflict
 */
export async function claimIdempotencyKey(
  tx: Tx,
  key: string,
  entry: { orderId: string; requestHash: string },
): Promise<boolean> {
  return 1 === await tx.run(
    `INSERT INTO idempotency_keys (idempotency_key, request_hash, order_id, created_at)
     VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    key,
    entry.requestHash,
    entry.orderId,
    new Date().toISOString(),
  );
}
