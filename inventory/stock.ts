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

/**
 * What claiming an order's reservation found: a new claim, to be reserved or failed now; a
 * cancellation that came first, so the order must fail with {@linkcode ORDER_CANCELLED_REASON}
 * and take nothing; or an `OrderPlaced` handled before, to be skipped.
 */
export type Claim = "claimed" | "cancelled" | "duplicate";

/**
 * Claims a reservation for each of `orders`, as their `OrderPlaced` are handled: one INSERT for
 * all of them, and for each order that has a reservation already, a look at it alone (a
 * cancellation that came first, or an order handled before: both rare).
 *
 * The INSERT comes first: on PostgreSQL it waits for a concurrent transaction that inserted the
 * same order (a cancellation remembered by another instance) and then conflicts, so the UPDATE
 * that follows sees that row committed.
 * @returns the claim of each order, at the same index; an order that comes twice is claimed once
 */
export async function claimReservations(
  tx: Tx,
  orders: ReadonlyArray<{ order_id: string; items: OrderItem[] }>,
): Promise<Claim[]> {
  if (orders.length === 0) return [];
  const now = new Date().toISOString();
  const inserted = await tx.all<{ order_id: string }>(
    `INSERT INTO reservations (order_id, status, reason, items, created_at, placed_at)
     VALUES ${orders.map(() => "(?, 'RESERVED', NULL, ?, ?, ?)").join(", ")}
     ON CONFLICT DO NOTHING RETURNING order_id`,
    ...orders.flatMap((order) => [order.order_id, JSON.stringify(order.items), now, now]),
  );
  const claimed = new Set(inserted.map((row) => row.order_id));
  const claims: Claim[] = [];
  for (const { order_id, items } of orders) {
    if (claimed.delete(order_id)) {
      claims.push("claimed");
      continue;
    }
    const cancelled = await tx.run(
      "UPDATE reservations SET placed_at = ?, items = ? WHERE order_id = ? AND placed_at IS NULL",
      now,
      JSON.stringify(items),
      order_id,
    );
    claims.push(cancelled === 1 ? "cancelled" : "duplicate");
  }
  return claims;
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
 * The INSERT comes first for the same reason as in {@linkcode claimReservations}: on PostgreSQL a
 * reservation being claimed beside it is waited for, then released by the UPDATE.
 */
export async function releaseReservation(
  tx: Tx,
  orderId: string,
  items: OrderItem[],
): Promise<Compensation> {
  const now = new Date().toISOString();
  // A FAILED reservation with no placed_at stands in for the order until its OrderPlaced comes.
  const remembered = await tx.run(
    `INSERT INTO reservations (order_id, status, reason, items, created_at)
     VALUES (?, 'FAILED', ?, ?, ?) ON CONFLICT DO NOTHING`,
    orderId,
    ORDER_CANCELLED_REASON,
    JSON.stringify(items),
    now,
  );
  if (remembered === 1) return "remembered";
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

/** Puts the stock of `items` back, SKUs in sorted order as {@linkcode lockStock} locks them. */
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

/** Marks claimed reservations as failed, each with its reason, in one statement. */
export async function failReservations(
  tx: Tx,
  failures: ReadonlyArray<{ order_id: string; reason: string }>,
): Promise<void> {
  if (failures.length === 0) return;
  await tx.run(
    `UPDATE reservations SET status = 'FAILED',
       reason = CASE order_id ${failures.map(() => "WHEN ? THEN ?").join(" ")} END
     WHERE order_id IN (${failures.map(() => "?").join(", ")})`,
    ...failures.flatMap((failure) => [failure.order_id, failure.reason]),
    ...failures.map((failure) => failure.order_id),
  );
}

/** The stock a batch of orders takes, decided in memory and written once. */
export interface StockTaking {
  /**
   * Takes the stock for every item of an order, or for none, from what the batch has left.
   * @returns undefined when taken, else why not (an unknown SKU or too little stock)
   */
  take(items: OrderItem[]): string | undefined;
  /** Writes what was taken, in one statement. */
  save(): Promise<void>;
}

/**
 * Locks and reads the stock of `skus` (see {@linkcode lockStock}) for a batch that takes from it.
 * Nothing else can change those rows before the batch commits (on SQLite, nothing else writes at
 * all), so the batch decides every order against the levels it read, in memory, and writes the
 * stock back in one statement: a round trip for the batch instead of one per item of each order.
 * The `qty >= 0` check of the table still stands behind it.
 */
export async function startTakingStock(tx: Tx, skus: string[]): Promise<StockTaking> {
  const levels = await lockStock(tx, skus);
  const taken = new Map<string, number>();
  return {
    take(items) {
      const wanted = totalBySku(items);
      for (const sku of [...wanted.keys()].sort()) {
        const have = levels.get(sku);
        if (have === undefined) return `unknown sku "${sku}"`;
        if (have < wanted.get(sku)!) {
          return `not enough stock for "${sku}": wanted ${wanted.get(sku)}, have ${have}`;
        }
      }
      for (const [sku, qty] of wanted) {
        levels.set(sku, levels.get(sku)! - qty);
        taken.set(sku, (taken.get(sku) ?? 0) + qty);
      }
      return undefined;
    },
    async save() {
      if (taken.size === 0) return;
      const skus = [...taken.keys()].sort();
      await tx.run(
        `UPDATE stock SET qty = qty - CASE sku ${
          skus.map(() => "WHEN ? THEN CAST(? AS INTEGER)").join(" ")
        } END WHERE sku IN (${skus.map(() => "?").join(", ")})`,
        ...skus.flatMap((sku) => [sku, taken.get(sku)!]),
        ...skus,
      );
    },
  };
}

/**
 * Reads the stock levels of `skus` and, on PostgreSQL, locks their rows in SKU order for the rest
 * of the transaction. Several inventory instances take stock at once there: a batch that took its
 * rows in the order of its orders could deadlock with another batch taking them in another order;
 * taking them all first, sorted, makes one wait for the other instead. SQLite has one writer at a
 * time and needs no lock.
 */
export async function lockStock(tx: Tx, skus: string[]): Promise<Map<string, number>> {
  if (skus.length === 0) return new Map();
  const sorted = [...new Set(skus)].sort();
  const rows = await tx.all<{ sku: string; qty: number }>(
    `SELECT sku, qty FROM stock WHERE sku IN (${sorted.map(() => "?").join(", ")}) ORDER BY sku${
      tx.dialect === "postgres" ? " FOR UPDATE" : ""
    }`,
    ...sorted,
  );
  return new Map(rows.map((row) => [row.sku, row.qty]));
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
