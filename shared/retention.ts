/**
 * Retention: rows that only guard against duplicates (the inbox, the idempotency keys) are deleted
 * once they are older than their window, in the background, a small batch per short transaction,
 * so that the tables every message touches stop growing with the service's age.
 *
 * A batch never runs inside a consumer's transaction and holds its locks for one small delete. On
 * PostgreSQL one instance at a time cleans a table: the others find its lock taken and skip the
 * round.
 * @module
 */
import { type Store, tryLockForTransaction } from "./store.ts";
import type { Logger } from "./log.ts";
import { type Periodic, startPeriodic } from "./periodic.ts";
import { counter } from "./metrics.ts";

const retentionDeleted = counter(
  "retention_deleted_rows_total",
  "Rows deleted as older than their retention window (inbox, idempotency keys)",
  ["table"],
);

/** A table whose old rows are deleted. */
export interface RetentionRule {
  table: string;
  /** The columns of its primary key, which a batch deletes by. */
  key: readonly string[];
  /** The column with each row's time as an ISO 8601 string in UTC, indexed. */
  time: string;
  /** How long a row is kept, in milliseconds. */
  keepMs: number;
}

/** Options for {@linkcode deleteExpired} and {@linkcode startRetention}. */
export interface RetentionOptions {
  /** Rows deleted per transaction. @default {500} */
  batchSize?: number;
  /** The current time in milliseconds since the epoch. @default {Date.now()} */
  now?: number;
}

/**
 * Deletes the rows of `rule.table` older than `rule.keepMs`, one batch per transaction.
 * @returns how many rows were deleted; 0 when another instance holds the table's lock
 */
export async function deleteExpired(
  store: Store,
  rule: RetentionRule,
  options: RetentionOptions = {},
): Promise<number> {
  const { batchSize = 500, now = Date.now() } = options;
  const cutoff = new Date(now - rule.keepMs).toISOString();
  const key = rule.key.join(", ");
  let deleted = 0;
  while (true) {
    // A lost delete only deletes again next round: no fsync of its own.
    const batch = await store.transaction(async (tx) => {
      if (!await tryLockForTransaction(tx, `retention ${rule.table}`)) return 0;
      return await tx.run(
        `DELETE FROM ${rule.table} WHERE (${key}) IN (
           SELECT ${key} FROM ${rule.table} WHERE ${rule.time} < ? ORDER BY ${rule.time} LIMIT ?
         )`,
        cutoff,
        batchSize,
      );
    }, { durable: false });
    deleted += batch;
    if (batch < batchSize) return deleted;
    // Between batches, the consumers' transactions take their turn.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Deletes expired rows of every rule now and then, for the life of the service: each rule every
 * tenth of its window, at least every second and at most every minute.
 */
export function startRetention(
  store: Store,
  rules: readonly RetentionRule[],
  options: { log: Logger },
): Periodic {
  const { log } = options;
  const loops = rules.map((rule) =>
    startPeriodic(async function deleteExpiredRows() {
      const deleted = await deleteExpired(store, rule);
      if (deleted > 0) {
        retentionDeleted.inc({ table: rule.table }, deleted);
        log.debug("deleted expired rows", { table: rule.table, rows: deleted });
      }
    }, {
      intervalMs: Math.min(60_000, Math.max(1000, rule.keepMs / 10)),
      log,
      name: "delete expired rows",
      fields: { table: rule.table },
    })
  );
  return {
    async stop() {
      await Promise.all(loops.map((loop) => loop.stop()));
    },
  };
}
