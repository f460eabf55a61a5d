/**
 * The transactional outbox: events written in the same transaction as the change that caused them,
 * and deleted only after the broker confirmed them. These are the operations on its rows, the
 * signal its commits send the relay that publishes them (`relay.ts`), and its gauges.
 * @module
 */
import { jsonArrayTable, type Migration, type Store, type Tx } from "./store.ts";
import type { Event } from "./events.ts";
import { readBacklog, watchBacklog } from "./backlog.ts";

/** The outbox's columns after its key, the same in every dialect. */
const OUTBOX_COLUMNS = `event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    created_at TEXT NOT NULL`;

export const OUTBOX_MIGRATION: Migration = {
  name: "outbox",
  sql: `CREATE TABLE outbox (
    sequence_number INTEGER PRIMARY KEY AUTOINCREMENT,
    ${OUTBOX_COLUMNS}
  )`,
  postgres: `CREATE TABLE outbox (
    sequence_number BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ${OUTBOX_COLUMNS}
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

/** The store topic a transaction that enqueued rows notifies on commit. */
const OUTBOX_TOPIC = "outbox";

/**
 * Calls `listener` after each commit of a transaction that enqueued outbox rows in this process,
 * however it did; returns an off switch. How the relay learns of new rows without a poll.
 */
export function listenOutbox(store: Store, listener: () => void): () => void {
  return store.listen(OUTBOX_TOPIC, listener);
}

/** The most rows one INSERT of {@linkcode enqueueOutbox} takes. */
const MAX_ROWS_PER_INSERT = 64;

/**
 * Adds `entries` to the outbox, in their order. Must run in the transaction of the change that
 * caused them; its commit calls the listeners of {@linkcode listenOutbox}.
 *
 * The rows go as VALUES lists of 64, 32, …, 1 rows (a batch of 100 is three INSERTs), so that a
 * batch of any size takes a few statements of at most seven shapes, each prepared once. Not as one
 * JSON array, as the inbox's ids do: each body is JSON, which would be escaped inside it, and
 * SQLite reads such text back out of a JSON array much more slowly than it binds it.
 */
export async function enqueueOutbox(tx: Tx, entries: OutboxEntry[]): Promise<void> {
  if (entries.length > 0) tx.notify(OUTBOX_TOPIC);
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
 * Claims the oldest `limit` rows not yet confirmed by the broker, oldest first. On PostgreSQL they
 * are locked until the transaction ends, and rows another relay holds are skipped; on SQLite, where
 * one process owns the file, they are only read.
 */
export function claimOutbox(tx: Tx, limit: number): Promise<OutboxMessage[]> {
  return tx.all<OutboxMessage>(
    `SELECT * FROM outbox ORDER BY sequence_number LIMIT ?${
      tx.dialect === "postgres" ? " FOR UPDATE SKIP LOCKED" : ""
    }`,
    limit,
  );
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

/** Reports the outbox at each scrape: rows waiting and the age of the oldest, in seconds. */
export function watchOutbox(store: Store): void {
  watchBacklog(store, {
    count: {
      name: "campus_food_outbox_pending",
      help: "Outbox rows not yet confirmed by the broker",
    },
    oldestAge: {
      name: "campus_food_outbox_oldest_age_seconds",
      help: "Age of the oldest outbox row not yet confirmed, 0 when empty",
    },
    read: (tx) => readBacklog(tx, "outbox"),
  });
}
