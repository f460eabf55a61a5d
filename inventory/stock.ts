/**
 * Inventory's tables: stock per SKU and one reservation per order. The primary key on
 * `reservations.order_id` makes a second event for the same order a no-op.
 *
 * A reservation is RESERVED (it holds its items' stock), FAILED (it never took any: short stock,
 * an unknown SKU, or the order was cancelled before its `OrderPlaced` came) or RELEASED (it held
 * stock and gave it back when the order was cancelled or expired). Only RESERVED holds stock.
 * @module
 */
import type { Migration, Store, Tx } from "../shared/store.ts";
import { ORDER_CANCELLED_REASON, type OrderItem } from "../shared/events.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";
import { OUTBOX_MIGRATION } from "../shared/outbox.ts";

export const INVENTORY_MIGRATIONS: Migration[] = [
  INBOX_MIGRATION,
  OUTBOX_MIGRATION,
  {
    name: "inventory",
    sql: `CREATE TABLE stock (
      sku TEXT PRIMARY KEY,
      qty INTEGER NOT NULL CHECK (qty >= 0)
    );
    CREATE TABLE reservations (
      order_id TEXT PRIMARY KEY,
      status TEXT NOT NULL CHECK (status IN ('RESERVED', 'FAILED')),
      reason TEXT,
      items TEXT NOT NULL,
      created_at TEXT NOT NULL
    )`,
  },
  INBOX_RECEIVED_AT_MIGRATION,
  {
    // SQLite cannot change a CHECK constraint in place: the table is copied into a new one.
    // `placed_at` is when the order's OrderPlaced was handled: NULL for a reservation that only
    // remembers a cancellation which came first. `released_at` is when its stock was given back.
    name: "reservations_released",
    sql: `CREATE TABLE reservations_v2 (
      order_id TEXT PRIMARY KEY,
      status TEXT NOT NULL CHECK (status IN ('RESERVED', 'FAILED', 'RELEASED')),
      reason TEXT,
      items TEXT NOT NULL,
      created_at TEXT NOT NULL,
      placed_at TEXT,
      released_at TEXT
    );
    INSERT INTO reservations_v2 (order_id, status, reason, items, created_at, placed_at)
      SELECT order_id, status, reason, items, created_at, created_at FROM reservations;
    DROP TABLE reservations;
    ALTER TABLE reservations_v2 RENAME TO reservations`,
    postgres: `ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
    ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
      CHECK (status IN ('RESERVED', 'FAILED', 'RELEASED'));
    ALTER TABLE reservations ADD COLUMN placed_at TEXT, ADD COLUMN released_at TEXT;
    UPDATE reservations SET placed_at = created_at`,
  },
];

/** A reservation as `GET /reservations/{order_id}` shows it. */
export interface Reservation {
  order_id: string;
  status: "RESERVED" | "FAILED" | "RELEASED";
  reason?: string;
  items: OrderItem[];
}

/** Adds the SKUs of `stock` that the store does not have yet; existing levels are left alone. */
export async function seedStock(store: Store, stock: Record<string, number>): Promise<void> {
  await store.transaction(async (tx) => {
    for (const [sku, qty] of Object.entries(stock)) {
      await tx.run("INSERT INTO stock (sku, qty) VALUES (?, ?) ON CONFLICT DO NOTHING", sku, qty);
    }
  });
}

/** A reservation as {@linkcode insertReservation} adds it. */
interface NewReservation {
  status: "RESERVED" | "FAILED";
  reason?: string;
  items: OrderItem[];
  /** When it is added, as an ISO timestamp. */
  now: string;
  /** Whether the order's `OrderPlaced` is what adds it; not so for a cancellation that came first. */
  placed: boolean;
}

/**
 * Adds the reservation of `orderId` unless it has one: the first step of both claiming and
 * releasing. On PostgreSQL it waits for a concurrent transaction that inserted the same order.
 * @returns whether it was added
 */
async function insertReservation(
  tx: Tx,
  orderId: string,
  reservation: NewReservation,
): Promise<boolean> {
  const { status, reason, items, now, placed } = reservation;
  return await tx.run(
    `INSERT INTO reservations (order_id, status, reason, items, created_at, placed_at)
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    orderId,
    status,
    reason ?? null,
    JSON.stringify(items),
    now,
    placed ? now : null,
  ) === 1;
}

/**
 * What claiming an order's reservation found: a new claim, to be reserved or failed now; a
 * cancellation that came first, so the order must fail with {@linkcode ORDER_CANCELLED_REASON}
 * and take nothing; or an `OrderPlaced` handled before, to be skipped.
 */
export type Claim = "claimed" | "cancelled" | "duplicate";

/**
 * Claims `orderId` for a reservation, as its `OrderPlaced` is handled.
 *
 * The INSERT comes first: on PostgreSQL it waits for a concurrent transaction that inserted the
 * same order (a cancellation remembered by another instance) and then conflicts, so the UPDATE
 * that follows sees that row committed.
 */
export async function claimReservation(
  tx: Tx,
  orderId: string,
  items: OrderItem[],
): Promise<Claim> {
  const now = new Date().toISOString();
  if (await insertReservation(tx, orderId, { status: "RESERVED", items, now, placed: true })) {
    return "claimed";
  }
  const cancelled = await tx.run(
    "UPDATE reservations SET placed_at = ?, items = ? WHERE order_id = ? AND placed_at IS NULL",
    now,
    JSON.stringify(items),
    orderId,
  );
  return cancelled === 1 ? "cancelled" : "duplicate";
}

/** What handling an order's `OrderCancelled` did to its reservation. */
export type Compensation =
  /** It was RESERVED: now RELEASED, and its stock is back. */
  | "released"
  /** There was none yet: a FAILED one now stands in for it, so its OrderPlaced takes nothing. */
  | "remembered"
  /** It was FAILED or RELEASED already: no stock was held. */
  | "none";

/**
 * Gives back what the reservation of `orderId` holds, exactly once, or remembers that the order
 * was cancelled before inventory saw it. Must run in the transaction that records the event.
 *
 * The INSERT comes first for the same reason as in {@linkcode claimReservation}: on PostgreSQL a
 * reservation being claimed beside it is waited for, then released by the UPDATE.
 */
export async function releaseReservation(
  tx: Tx,
  orderId: string,
  items: OrderItem[],
): Promise<Compensation> {
  const now = new Date().toISOString();
  const cancelledFirst: NewReservation = {
    status: "FAILED",
    reason: ORDER_CANCELLED_REASON,
    items,
    now,
    placed: false,
  };
  if (await insertReservation(tx, orderId, cancelledFirst)) return "remembered";
  const released = await tx.get<{ items: string }>(
    `UPDATE reservations SET status = 'RELEASED', released_at = ?
     WHERE order_id = ? AND status = 'RESERVED' RETURNING items`,
    now,
    orderId,
  );
  if (!released) return "none";
  await returnStock(tx, JSON.parse(released.items));
  return "released";
}

/** Puts the stock of `items` back, SKUs in sorted order as {@linkcode takeStock} takes them. */
async function returnStock(tx: Tx, items: OrderItem[]): Promise<void> {
  for (const [sku, qty] of [...totalBySku(items)].sort(([a], [b]) => a < b ? -1 : 1)) {
    await tx.run("UPDATE stock SET qty = qty + ? WHERE sku = ?", qty, sku);
  }
}

function totalBySku(items: OrderItem[]): Map<string, number> {
  const wanted = new Map<string, number>();
  for (const { sku, qty } of items) wanted.set(sku, (wanted.get(sku) ?? 0) + qty);
  return wanted;
}

/** Marks a claimed reservation as failed with `reason`. */
export async function failReservation(tx: Tx, orderId: string, reason: string): Promise<void> {
  await tx.run(
    "UPDATE reservations SET status = 'FAILED', reason = ? WHERE order_id = ?",
    reason,
    orderId,
  );
}

/**
 * Takes the stock for every item, or for none.
 *
 * Each take is a conditional `UPDATE … WHERE qty >= ?`, never a read and then a write, so stock
 * cannot go negative whatever runs beside it; SKUs are taken in sorted order so that two orders
 * never lock each other's rows in opposite orders. If one item is short, a savepoint undoes the
 * items taken before it, and only this order's work.
 * @returns undefined when taken, else why not (an unknown SKU or too little stock)
 */
export async function takeStock(tx: Tx, items: OrderItem[]): Promise<string | undefined> {
  const wanted = totalBySku(items);
  // With one SKU nothing can be taken before a shortage: no savepoint, two statements fewer (two
  // round trips on PostgreSQL).
  const undoable = wanted.size > 1;
  if (undoable) await tx.run("SAVEPOINT take_stock");
  for (const sku of [...wanted.keys()].sort()) {
    const qty = wanted.get(sku)!;
    if (await tx.run("UPDATE stock SET qty = qty - ? WHERE sku = ? AND qty >= ?", qty, sku, qty)) {
      continue;
    }
    if (undoable) {
      await tx.run("ROLLBACK TO SAVEPOINT take_stock");
      await tx.run("RELEASE SAVEPOINT take_stock");
    }
    const row = await tx.get<{ qty: number }>("SELECT qty FROM stock WHERE sku = ?", sku);
    return row
      ? `not enough stock for "${sku}": wanted ${qty}, have ${row.qty}`
      : `unknown sku "${sku}"`;
  }
  if (undoable) await tx.run("RELEASE SAVEPOINT take_stock");
  return undefined;
}

/**
 * Locks the stock rows of `skus` in SKU order, for the rest of the transaction. On PostgreSQL,
 * where several inventory instances take stock at once, a batch that took its rows in the order of
 * its orders could deadlock with another batch taking them in another order; taking them all first,
 * sorted, makes one wait for the other instead. SQLite has one writer at a time and needs none.
 */
export async function lockStock(tx: Tx, skus: string[]): Promise<void> {
  if (tx.dialect !== "postgres" || skus.length === 0) return;
  const sorted = [...new Set(skus)].sort();
  await tx.all(
    `SELECT sku FROM stock WHERE sku IN (${
      sorted.map(() => "?").join(", ")
    }) ORDER BY sku FOR UPDATE`,
    ...sorted,
  );
}

/** The reservation of `orderId`, if any. */
export async function getReservation(tx: Tx, orderId: string): Promise<Reservation | undefined> {
  const row = await tx.get<
    { order_id: string; status: Reservation["status"]; reason: string | null; items: string }
  >(
    "SELECT order_id, status, reason, items FROM reservations WHERE order_id = ?",
    orderId,
  );
  if (!row) return undefined;
  return {
    order_id: row.order_id,
    status: row.status,
    ...(row.reason === null ? {} : { reason: row.reason }),
    items: JSON.parse(row.items),
  };
}

/** Every SKU's stock level. */
export async function listStock(tx: Tx): Promise<Record<string, number>> {
  const rows = await tx.all<{ sku: string; qty: number }>(
    "SELECT sku, qty FROM stock ORDER BY sku",
  );
  return Object.fromEntries(rows.map((row) => [row.sku, row.qty]));
}
