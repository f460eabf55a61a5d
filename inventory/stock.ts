/**
 * Inventory's tables: stock per SKU and one reservation per order. The primary key on
 * `reservations.order_id` makes a second event for the same order a no-op.
 * @module
 */
import type { Migration, Store, Tx } from "../shared/store.ts";
import type { OrderItem } from "../shared/events.ts";
import { INBOX_MIGRATION, INBOX_RECEIVED_AT_MIGRATION } from "../shared/inbox.ts";
import { OUTBOX_MIGRATION } from "../shared/outbox.ts";

export const INVENTORY_MIGRATIONS: Migration[] = [INBOX_MIGRATION, OUTBOX_MIGRATION, {
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
}, INBOX_RECEIVED_AT_MIGRATION];

/** A reservation as `GET /reservations/{order_id}` shows it. */
export interface Reservation {
  order_id: string;
  status: "RESERVED" | "FAILED";
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

/**
 * Claims `orderId` for a reservation.
 * @returns false when the order already has one: the event is a second one for the same order
 */
export async function claimReservation(
  tx: Tx,
  orderId: string,
  items: OrderItem[],
): Promise<boolean> {
  const inserted = await tx.run(
    `INSERT INTO reservations (order_id, status, items, created_at) VALUES (?, 'RESERVED', ?, ?)
     ON CONFLICT DO NOTHING`,
    orderId,
    JSON.stringify(items),
    new Date().toISOString(),
  );
  return inserted === 1;
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
  const wanted = new Map<string, number>();
  for (const { sku, qty } of items) wanted.set(sku, (wanted.get(sku) ?? 0) + qty);
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
