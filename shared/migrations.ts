/**
 * Schema migrations: each service's named scripts, applied once, in order, at start, with the
 * store's own tables (which migrations ran, and the row that probes write) created beside them.
 * @module
 */
import type { Migration, Tx } from "./store.ts";

/** Options for {@linkcode migrate}. */
export interface MigrateOptions {
  /**
   * Runs a migration's script on the transaction's connection, outside `Tx`: a script may hold
   * several statements, which a prepared statement cannot.
   */
  runScript: (migration: Migration) => unknown;
}

/**
 * Applies the `migrations` that `tx`'s database has not recorded yet, in order, and records each.
 * Callers run it in one transaction, so that a failed migration leaves nothing behind.
 */
export async function migrate(
  tx: Tx,
  migrations: readonly Migration[],
  options: MigrateOptions,
): Promise<void> {
  const { runScript } = options;
  await tx.run(
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
  );
  // The table that Store.probe() writes to (see store_probe.ts).
  await tx.run(
    "CREATE TABLE IF NOT EXISTS store_probe (probe_id INTEGER PRIMARY KEY, probed_at TEXT NOT NULL)",
  );
  for (const migration of migrations) {
    if (await tx.get("SELECT 1 FROM schema_migrations WHERE name = ?", migration.name)) continue;
    await runScript(migration);
    await tx.run(
      "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
      migration.name,
      new Date().toISOString(),
    );
  }
}
