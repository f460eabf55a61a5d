/**
 * The order service's tables: orders with their status, and the idempotency keys of `POST /order`.
 * @module
 */
import type { Migration, Tx } from "../shared/store.ts";
import type { Order, OrderItem } from "../shared/events.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";
import { OUTBOX_MIGRATION } from "../shared/outbox.ts";
import type { RetentionRule } from "../shared/retention.ts";
import { counter } from "../shared/metrics.ts";

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
  {
    // SQLite cannot change a CHECK constraint in place: the table is copied into a new one. The
    // partial index holds only the PENDING orders, so the expiry sweep reads the few it may expire.
    name: "orders_cancelled_expired",
    sql: `CREATE TABLE orders_v2 (
      order_id TEXT PRIMARY KEY,
      user_id TEXT NOT NULL,
      items TEXT NOT NULL,
      status TEXT NOT NULL
        CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED')),
      reason TEXT,
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    );
    INSERT INTO orders_v2 (order_id, user_id, items, status, reason, created_at, updated_at)
      SELECT order_id, user_id, items, status, reason, created_at, updated_at FROM orders;
    DROP TABLE orders;
    ALTER TABLE orders_v2 RENAME TO orders;
    CREATE INDEX orders_pending_by_created_at ON orders (created_at) WHERE status = 'PENDING'`,
    postgres: `ALTER TABLE orders DROP CONSTRAINT orders_status_check;
    ALTER TABLE orders ADD CONSTRAINT orders_status_check
      CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'CANCELLED', 'EXPIRED'));
    CREATE INDEX orders_pending_by_created_at ON orders (created_at) WHERE status = 'PENDING'`,
  },
  {
    // A key belongs to the student who used it: the same key from another student is another
    // request, and must neither fail nor tell them the key was used. Existing keys take the
    // student of their order. Portable SQL: both databases rebuild the table the same way.
    name: "idempotency_keys_per_student",
    sql: `CREATE TABLE idempotency_keys_v2 (
      user_id TEXT NOT NULL,
      idempotency_key TEXT NOT NULL,
      request_hash TEXT NOT NULL,
      order_id TEXT NOT NULL,
      created_at TEXT NOT NULL,
      PRIMARY KEY (user_id, idempotency_key)
    );
    INSERT INTO idempotency_keys_v2 (user_id, idempotency_key, request_hash, order_id, created_at)
      SELECT orders.user_id, keys.idempotency_key, keys.request_hash, keys.order_id, keys.created_at
      FROM idempotency_keys AS keys JOIN orders ON orders.order_id = keys.order_id;
    DROP TABLE idempotency_keys;
    ALTER TABLE idempotency_keys_v2 RENAME TO idempotency_keys;
    CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)`,
  },
  {
    // MAX_UNITS_PER_STUDENT adds up a student's open orders at each POST /order.
    name: "orders_open_by_user",
    sql: `CREATE INDEX orders_open_by_user ON orders (user_id)
      WHERE status IN ('PENDING', 'CONFIRMED')`,
  },
  {
    // Events the order service publishes long after the request (the expiry) continue its trace.
    name: "orders_traceparent",
    sql: "ALTER TABLE orders ADD COLUMN traceparent TEXT",
  },
];

/** Counted where each change commits: placing, deciding, cancelling and expiring orders. */
export const orderStatusChanges = counter(
  "order_status_changes_total",
  "Orders that changed status (order service): from PENDING to each outcome, and to CANCELLED",
  ["from", "to"],
);

/**
 * `POST /order` forgets an `Idempotency-Key` `keepMs` after its first use: a retry that comes later
 * places a new order, as with Stripe's keys, which expire after 24 hours.
 */
export function idempotencyKeyRetention(keepMs: number): RetentionRule {
  return {
    table: "idempotency_keys",
    key: ["user_id", "idempotency_key"],
    time: "created_at",
    keepMs,
  };
}

/**
 * PENDING until inventory's outcome makes it CONFIRMED or REJECTED, or the decision timeout makes
 * it EXPIRED; the student can cancel a PENDING or CONFIRMED order (CANCELLED). Only PENDING and
 * CONFIRMED ever change again.
 */
export type OrderStatus = "PENDING" | "CONFIRMED" | "REJECTED" | "CANCELLED" | "EXPIRED";

/** An order as `GET /orders/{order_id}` shows it. */
export interface OrderView extends Order {
  status: OrderStatus;
  reason?: string;
  updated_at: string;
}

/**
 * Records an order this service never took, already decided `status` (for `reason`): one that was
 * published to the broker by hand, as the original system's scripts do, and came back with
 * inventory's outcome. Created now. Does nothing when the order exists.
 * @returns false when the order existed
 */
export async function adoptOrder(
  tx: Tx,
  order: OrderFacts,
  decision: { status: "CONFIRMED" | "REJECTED"; reason?: string },
): Promise<boolean> {
  const now = new Date().toISOString();
  const inserted = await tx.run(
    `INSERT INTO orders (order_id, user_id, items, status, reason, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`,
    order.order_id,
    order.user_id,
    JSON.stringify(order.items),
    decision.status,
    decision.reason ?? null,
    now,
    now,
  );
  return inserted === 1;
}

/**
 * Inserts a new, pending order, with the `traceparent` of its placing, which the events published
 * about it later (its expiry) continue.
 */
export async function insertOrder(
  tx: Tx,
  order: Order,
  options: { traceparent?: string } = {},
): Promise<void> {
  await tx.run(
    `INSERT INTO orders (order_id, user_id, items, status, created_at, updated_at, traceparent)
     VALUES (?, ?, ?, 'PENDING', ?, ?, ?)`,
    order.order_id,
    order.user_id,
    JSON.stringify(order.items),
    order.created_at,
    order.created_at,
    options.traceparent ?? null,
  );
}

/** Options for {@linkcode getOrder}. */
export interface GetOrderOptions {
  /**
   * Lock the row until the transaction ends (PostgreSQL; SQLite has one writer at a time), so that
   * a change decided from its status cannot race another. @default {false}
   */
  forUpdate?: boolean;
}

/** The order `orderId`, if any. */
export async function getOrder(
  tx: Tx,
  orderId: string,
  options: GetOrderOptions = {},
): Promise<OrderView | undefined> {
  const lock = options.forUpdate && tx.dialect === "postgres" ? " FOR UPDATE" : "";
  const row = await tx.get<
    Omit<OrderView, "items" | "reason"> & { items: string; reason: string | null }
  >(
    `SELECT order_id, user_id, items, status, reason, created_at, updated_at FROM orders
     WHERE order_id = ?${lock}`,
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

/** A change of an order's status, made only if the order still has status `from`. */
export interface StatusChange {
  from: OrderStatus;
  to: OrderStatus;
  /** Kept as the order's `reason`; the one it had is kept when undefined. */
  reason?: string;
}

/** What the events about an order carry of it: whose it is and what is in it. */
export type OrderFacts = Pick<OrderView, "order_id" | "user_id" | "items">;

/**
 * Changes the status of `orderId` if it is still `change.from`: a conditional UPDATE, so that of
 * two changes racing for one order (an outcome and a cancellation, say) exactly one wins.
 * @returns the order, or undefined when it does not exist or no longer has status `change.from`
 */
export async function changeStatus(
  tx: Tx,
  orderId: string,
  change: StatusChange,
): Promise<OrderFacts | undefined> {
  return (await changeStatuses(tx, [{ orderId, change }])).get(orderId);
}

/**
 * Makes each of `changes` as {@linkcode changeStatus} does, all in one statement: at most one
 * change per order.
 * @returns the orders changed, by id; an order missing did not exist or had another status
 */
export async function changeStatuses(
  tx: Tx,
  changes: ReadonlyArray<{ orderId: string; change: StatusChange }>,
): Promise<Map<string, OrderFacts>> {
  if (changes.length === 0) return new Map();
  // One value per order: a CASE on order_id, whose parameters `perOrder()` gives.
  const byOrder = `CASE order_id ${changes.map(() => "WHEN ? THEN ?").join(" ")} END`;
  const perOrder = (pick: (change: StatusChange) => string | null) =>
    changes.flatMap(({ orderId, change }) => [orderId, pick(change)]);
  const rows = await tx.all<{ order_id: string; user_id: string; items: string }>(
    `UPDATE orders SET status = ${byOrder}, reason = COALESCE(${byOrder}, reason), updated_at = ?
     WHERE order_id IN (${changes.map(() => "?").join(", ")}) AND status = ${byOrder}
     RETURNING order_id, user_id, items`,
    ...perOrder((change) => change.to),
    ...perOrder((change) => change.reason ?? null),
    new Date().toISOString(),
    ...changes.map(({ orderId }) => orderId),
    ...perOrder((change) => change.from),
  );
  return new Map(
    rows.map((row) => [row.order_id, { ...row, items: JSON.parse(row.items) as OrderItem[] }]),
  );
}

/** An order the expiry sweep moved to EXPIRED, with the trace of its placing if it has one. */
export type ExpiredOrder = OrderFacts & { traceparent?: string };

/**
 * Moves up to `limit` orders that are PENDING and were created before `createdBefore` (an ISO
 * 8601 time) to EXPIRED, oldest first, in one statement. On PostgreSQL, orders another
 * transaction holds (an instance deciding or expiring them) are skipped: the conditional UPDATE
 * would not expire them twice anyway, and this way two sweeps never wait for each other.
 * @returns the orders this call expired
 */
export async function expirePendingOrders(
  tx: Tx,
  createdBefore: string,
  options: { limit: number; reason: string },
): Promise<ExpiredOrder[]> {
  const rows = await tx.all<
    { order_id: string; user_id: string; items: string; traceparent: string | null }
  >(
    `UPDATE orders SET status = 'EXPIRED', reason = ?, updated_at = ?
     WHERE status = 'PENDING' AND order_id IN (
       SELECT order_id FROM orders WHERE status = 'PENDING' AND created_at < ?
       ORDER BY created_at LIMIT ?${tx.dialect === "postgres" ? " FOR UPDATE SKIP LOCKED" : ""}
     )
     RETURNING order_id, user_id, items, traceparent`,
    options.reason,
    new Date().toISOString(),
    createdBefore,
    options.limit,
  );
  return rows.map(({ traceparent, ...row }) => ({
    ...row,
    items: JSON.parse(row.items) as OrderItem[],
    ...(traceparent === null ? {} : { traceparent }),
  }));
}

/** The order and request hash student `userId` first used an idempotency key with, if any. */
export function findIdempotencyKey(
  tx: Tx,
  userId: string,
  key: string,
): Promise<{ order_id: string; request_hash: string } | undefined> {
  return tx.get(
    "SELECT order_id, request_hash FROM idempotency_keys WHERE user_id = ? AND idempotency_key = ?",
    userId,
    key,
  );
}

/**
 * Claims `key` of student `entry.userId` for a new order `orderId` made from a request whose hash
 * is `requestHash`. Keys are per student: another student's use of the same key is not a claim of
 * it. On PostgreSQL a concurrent claim of the same key waits for the first to commit, then loses.
 * @returns false when the student claimed the key before: the request is a retry, or a conflict
 */
export async function claimIdempotencyKey(
  tx: Tx,
  key: string,
  entry: { userId: string; orderId: string; requestHash: string },
): Promise<boolean> {
  return 1 === await tx.run(
    `INSERT INTO idempotency_keys (user_id, idempotency_key, request_hash, order_id, created_at)
     VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    entry.userId,
    key,
    entry.requestHash,
    entry.orderId,
    new Date().toISOString(),
  );
}

/**
 * The units (the sum of `qty` over their items) that student `userId`'s PENDING and CONFIRMED
 * orders hold together: what `MAX_UNITS_PER_STUDENT` caps.
 */
export async function countOpenUnits(tx: Tx, userId: string): Promise<number> {
  const items = tx.dialect === "postgres"
    ? "json_array_elements(orders.items::json) AS item"
    : "json_each(orders.items) AS item";
  const qty = tx.dialect === "postgres"
    ? "(item.value->>'qty')::integer"
    : "json_extract(item.value, '$.qty')";
  const row = await tx.get<{ units: number }>(
    `SELECT COALESCE(SUM(${qty}), 0) AS units FROM orders, ${items}
     WHERE orders.user_id = ? AND orders.status IN ('PENDING', 'CONFIRMED')`,
    userId,
  );
  return Number(row?.units ?? 0);
}
