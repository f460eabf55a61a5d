/**
 * The inbox: which events each consumer has already handled. Its primary key on
 * (`consumer`, `event_id`) is what turns at-least-once delivery into exactly-once effects.
 * @module
 */
import type { Migration, Tx } from "./store.ts";

export const INBOX_MIGRATION: Migration = {
  name: "inbox",
  sql: `CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
  )`,
};

/**
 * Records that `consumer` handles `eventId`. Must run in the same transaction as the handler's
 * effects, so that the record and the effects commit together.
 *
 * @returns false when the event was handled before: a duplicate to ack and otherwise ignore
 */
export async function recordInbox(tx: Tx, consumer: string, eventId: string): Promise<boolean> {
  const inserted = await tx.run(
    "INSERT INTO inbox (consumer, event_id, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    consumer,
    eventId,
    new Date().toISOString(),
  );
  return inserted === 1;
}
