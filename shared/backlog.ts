/**
 * The backlog of a table whose rows wait to be done with (the outbox's until the broker confirms
 * them, the webhook deliveries' until they are delivered): how many wait and how old the oldest
 * is, read in one statement and reported as two gauges at each scrape.
 * @module
 */
import type { Store, Tx } from "./store.ts";
import { ageSeconds, gauges } from "./metrics.ts";

/** How many rows wait, and when the oldest of them was written. */
export interface Backlog {
  count: number;
  oldestCreatedAt: string | null;
}

/**
 * Reads the backlog of the rows `rows` names: a table with a `created_at` column, followed by a
 * WHERE clause where only some of its rows wait.
 */
export async function readBacklog(tx: Tx, rows: string): Promise<Backlog> {
  const row = await tx.get<{ count: number; oldest: string | null }>(
    `SELECT COUNT(*) AS count, MIN(created_at) AS oldest FROM ${rows}`,
  );
  return { count: Number(row?.count ?? 0), oldestCreatedAt: row?.oldest ?? null };
}

/** A gauge's full name and help text. */
export interface GaugeName {
  name: string;
  help: string;
}

/** What {@linkcode watchBacklog} reports: its two gauges, and how the backlog is read. */
export interface BacklogGauges {
  /** The gauge of how many rows wait. */
  count: GaugeName;
  /** The gauge of the oldest waiting row's age in seconds, 0 when none waits. */
  oldestAge: GaugeName;
  read: (tx: Tx) => Promise<Backlog>;
}

/** Reports a backlog at each scrape: the rows waiting and the age of the oldest, in seconds. */
export function watchBacklog(store: Store, backlog: BacklogGauges): void {
  const { count, oldestAge, read } = backlog;
  gauges([count.name], async () => {
    const { count: waiting, oldestCreatedAt } = await store.read(read);
    return [
      { ...count, value: waiting },
      { ...oldestAge, value: ageSeconds(oldestCreatedAt) },
    ];
  });
}
