/**
 * The probe of a store: one write of the store's own, committed, to tell when an outage has ended
 * (a full disk still answers reads, so only a write can say it has room again).
 * @module
 */
import type { Store } from "./store.ts";

/**
 * Writes the one row of the table `store_probe` (created by `migrate()`) and commits: what
 * {@linkcode Store.probe} does on either database.
 */
export async function probeStore(store: Store): Promise<void> {
  await store.transaction((tx) =>
    tx.run(
      `INSERT INTO store_probe (probe_id, probed_at) VALUES (1, ?)
       ON CONFLICT (probe_id) DO UPDATE SET probed_at = excluded.probed_at`,
      new Date().toISOString(),
    )
  );
}
