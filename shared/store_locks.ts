/**
 * Locks that instances of one service take within a transaction, to decide which of them does a
 * job or to wait for each other's commits about a thing no row stands for yet: PostgreSQL's
 * transaction-level advisory locks, and nothing on SQLite, where one process owns the file.
 * @module
 */
import type { Tx } from "./store.ts";

/**
 * The SQL of an advisory lock's key for the name `nameSql` in the store's own schema: advisory locks
 * belong to the whole database, which the services may share, and one service's lock must not hold
 * up another's.
 */
function advisoryKey(nameSql: string): string {
  return `hashtext(current_schema() || ' ' || ${nameSql})`;
}

/**
 * Takes the lock called `name` until `tx` ends, if no other instance of the service holds it: on
 * PostgreSQL a transaction-level advisory lock, on SQLite always (one process owns its file).
 * @returns false when another instance holds it
 */
export async function tryLockForTransaction(tx: Tx, name: string): Promise<boolean> {
  if (tx.dialect === "sqlite") return true;
  const row = await tx.get<{ locked: boolean }>(
    `SELECT pg_try_advisory_xact_lock(${advisoryKey("?")}) AS locked`,
    name,
  );
  return row?.locked === true;
}

/**
 * Takes the locks called `names` until `tx` ends, waiting for any another transaction holds: on
 * PostgreSQL transaction-level advisory locks, taken in sorted order so that two transactions
 * locking overlapping sets wait for each other instead of deadlocking; on SQLite nothing (one
 * writer at a time). For a change that must see what another instance is committing about the same
 * thing, where no row exists yet to lock.
 */
export async function lockForTransaction(tx: Tx, names: readonly string[]): Promise<void> {
  if (tx.dialect === "sqlite" || names.length === 0) return;
  // A function scan yields the array's elements in order, and each row takes its lock in turn.
  await tx.all(
    `SELECT pg_advisory_xact_lock(${advisoryKey("value")})
       FROM json_array_elements_text(?::json)`,
    JSON.stringify([...new Set(names)].sort()),
  );
}
