/**
 * The inbox: which events each consumer has already handled. Its primary key on
 * (`consumer`, `event_id`) is what turns at-least-once delivery into exactly-once effects.
 * @module
 */
import { jsonArrayTable, type Migration, type Tx } from "./store.ts";
import type { RetentionRule } from "./retention.ts";

export const INBOX_MIGRATION: Migration = {
  name: "inbox",
  sql: `CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
  )`,
};

/** What retention needs to find the oldest inbox rows without reading them all. */
export const INBOX_RECEIVED_AT_MIGRATION: Migration = {
  name: "inbox_received_at",
  sql: "CREATE INDEX inbox_received_at ON inbox (received_at)",
};

/**
 * The inbox forgets an event `keepMs` after receiving it. A duplicate that comes later is handled
 * again, so the consumer's effects must still be keyed by what they are about (an order's
 * reservation, its notification), as they are here.
 */
export function inboxRetention(keepMs: number): RetentionRule {
  return { table: "inbox", key: ["consumer", "event_id"], time: "received_at", keepMs };
}

/**
 * Records that `consumer` handles the events `eventIds`, all in one statement. Must run in the same
 * transaction as the handler's effects, so that the records and the effects commit together.
 *
 * @returns for each id, in order, false when it was handled before or comes again in `eventIds`:
 * a duplicate to ack and otherwise ignore
 */
export async function recordInbox(
  tx: Tx,
  consumer: string,
  eventIds: string[],
): Promise<boolean[]> {
  if (eventIds.length === 0) return [];
  // SQLite needs a WHERE in INSERT … SELECT before ON CONFLICT, or it parses ON as a join's.
  const recorded = await tx.all<{ event_id: string }>(
    `INSERT INTO inbox (consumer, event_id, received_at)
     SELECT ?, value, ? FROM ${jsonArrayTable(tx.dialect)} WHERE true
     ON CONFLICT DO NOTHING RETURNING event_id`,
    consumer,
    new Date().toISOString(),
    JSON.stringify(eventIds),
  );
  const fresh = new Set(recorded.map((row) => row.event_id));
  return eventIds.map((eventId) => fresh.delete(eventId));
}
