/**
 * The transactional outbox: events written in the same transaction as the change that caused them,
 * and deleted only after the broker confirmed them (see `relay.ts`).
 * @module
 */
import { jsonArrayTable, type Migration, type Store, type Tx } from "./store.ts";
import type { Event } from "./events.ts";

export const OUTBOX_MIGRATION: Migration = {
  name: "outbox",
  sql: `CREATE TABLE outbox (
    sequence_number INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at TEXT NOT NULL
  )`,
  postgres: `CREATE TABLE outbox (
    sequence_number BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at TEXT NOT NULL
  )`,
};

/** An outbox row: everything the relay needs to publish the event. */
export interface OutboxMessage {
  sequence_number: number;
  event_id: string;
  event_type: string;
  correlation_id: string;
  body: string;
  headers: string;
  created_at: string;
}

/** An event for the outbox, with the message headers it is published with. */
export interface OutboxEntry {
  event: Event;
  headers?: Record<string, string>;
}

/** The most rows one INSERT of {@linkcode enqueueOutbox} takes. */
const MAX_ROWS_PER_INSERT = 64;

/**
 * Adds `entries` to the outbox, in their order. Must run in the transaction of the change that
 * caused them.
 *
 * The rows go as VALUES lists of 64, 32, …, 1 rows (a batch of 100 is three INSERTs), so that a
 * batch of any size takes a few statements of at most seven shapes, each prepared once. Not as one
 * JSON array, as the inbox's ids do: each body is JSON, which would be escaped inside it, and
 * SQLite reads such text back out of a JSON array four times slower than it binds it.
 */
export async function enqueueOutbox(tx: Tx, entries: OutboxEntry[]): Promise<void> {
  for (let start = 0; start < entries.length;) {
    const size = Math.min(MAX_ROWS_PER_INSERT, 2 ** Math.floor(Math.log2(entries.length - start)));
    const chunk = entries.slice(start, start + size);
    start += size;
    await tx.run(
      `INSERT INTO outbox (event_id, event_type, correlation_id, body, headers, created_at)
       VALUES ${Array(size).fill("(?, ?, ?, ?, ?, ?)").join(", ")}`,
      ...chunk.flatMap(({ event, headers = {} }) => [
        event.event_id,
        event.event_type,
        event.correlation_id ?? "",
        JSON.stringify(event),
        JSON.stringify(headers),
        event.created_at ?? new Date().toISOString(),
      ]),
    );
  }
}

/**
 * The oldest `limit` rows not yet confirmed by the broker, oldest first. On PostgreSQL they are
 * locked until the transaction ends, and rows another relay holds are skipped.
 */
export function pendingOutbox(tx: Tx, limit: number): Promise<OutboxMessage[]> {
  return tx.all<OutboxMessage>(
    `SELECT * FROM outbox ORDER BY sequence_number LIMIT ?${
      tx.dialect === "postgres" ? " FOR UPDATE SKIP LOCKED" : ""
    }`,
    limit,
  );
}

/**
 * Hands the oldest pending rows to `publish` and deletes them once it resolved.
 *
 * On PostgreSQL the rows stay locked through the publish, so the relays of several instances take
 * different rows. On SQLite one process owns the file: the rows are read without holding the write
 * lock through the publish, which would stall every consumer for a broker round trip.
 * @returns how many rows were published
 */
export async function relayOutbox(
  store: Store,
  limit: number,
  publish: (rows: OutboxMessage[]) => Promise<void>,
): Promise<number> {
  // A delete lost to a power cut publishes its event again, and the inboxes absorb it.
  const deleting = { durable: false };
  if (store.dialect === "postgres") {
    return await store.transaction(async (tx) => {
      const rows = await pendingOutbox(tx, limit);
      if (rows.length > 0) await publish(rows);
      await markPublished(tx, rows.map((row) => row.sequence_number));
      return rows.length;
    }, deleting);
  }
  const rows = await store.read((tx) => pendingOutbox(tx, limit));
  if (rows.length === 0) return 0;
  await publish(rows);
  await store.transaction(
    (tx) => markPublished(tx, rows.map((row) => row.sequence_number)),
    deleting,
  );
  return rows.length;
}

/** Removes rows the broker has confirmed, in one statement: the numbers go as one JSON array. */
export async function markPublished(tx: Tx, sequenceNumbers: number[]): Promise<void> {
  if (sequenceNumbers.length === 0) return;
  await tx.run(
    `DELETE FROM outbox WHERE sequence_number IN
     (SELECT CAST(value AS BIGINT) FROM ${jsonArrayTable(tx.dialect)})`,
    JSON.stringify(sequenceNumbers),
  );
}

/** How many rows wait to be published, and when the oldest was written. */
export async function outboxBacklog(
  tx: Tx,
): Promise<{ count: number; oldestCreatedAt: string | null }> {
  const row = await tx.get<{ count: number; oldest: string | null }>(
    "SELECT COUNT(*) AS count, MIN(created_at) AS oldest FROM outbox",
  );
  return { count: Number(row?.count ?? 0), oldestCreatedAt: row?.oldest ?? null };
}
