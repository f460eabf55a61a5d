/**
 * The PostgreSQL store (through `pg`), for scale-out: a pool of connections to a schema shared by
 * every instance of a service, transactions run again when PostgreSQL aborts them for a deadlock or
 * a serialization failure, and, if asked, a wait for a server that cannot be reached at start.
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import type { SqlValue, Store, StoreOptions, Tx } from "./store.ts";
import { backoffDelayMs, failureStreak } from "./backoff.ts";
import { isPostgresOutage } from "./database_errors.ts";
import { migrate } from "./migrations.ts";
import { probeStore } from "./store_probe.ts";
import { topicListeners } from "./store_topics.ts";

/**
 * Errors for which PostgreSQL aborts a transaction only because of another one running beside it
 * (`deadlock_detected`, `serialization_failure`): running it again is the remedy it documents.
 * Instances consuming one queue in batches lock stock rows in different orders, so they happen.
 */
const RERUN_SQLSTATES = new Set(["40P01", "40001"]);

/** Runs of a transaction that PostgreSQL keeps aborting for a deadlock, before its error is thrown. */
const TRANSACTION_RUNS = 5;

/** The backoff between two attempts to reach a PostgreSQL server at start. */
const START_BACKOFF = { initialDelayMs: 200, maxDelayMs: 5000 } as const;

/**
 * Opens the store of the service `name` in the schema `<name>_service` of the database at `url`,
 * creating the schema if need be, and applies its pending migrations; with
 * `options.waitForServer`, waits for a server it cannot reach.
 */
export async function openPostgresStore(
  url: string,
  name: string,
  options: Omit<StoreOptions, "databaseUrl">,
): Promise<Store> {
  const { migrations, waitForServer } = options;
  // Loaded only here: a service on SQLite does not carry the driver in its memory.
  const { default: pg } = await import("pg");
  // BIGINT and COUNT(*) arrive as strings by default; every value here fits in a double.
  pg.types.setTypeParser(pg.types.builtins.INT8, Number);
  const schema = `${name}_service`;
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    options: `-c search_path=${schema}`,
    // Without it, a connection to a host that drops packets waits for the kernel's TCP timeout.
    connectionTimeoutMillis: 5000,
  });
  // An idle client that loses its connection emits this; the next checkout gets a fresh one.
  pool.on("error", () => {});
  const placeholders = new Map<string, { text: string; name: string }>();
  function prepared(sql: string, values: SqlValue[]): pg.QueryConfig {
    let query = placeholders.get(sql);
    if (!query) {
      let n = 0;
      query = { text: sql.replace(/\?/g, () => `$${++n}`), name: `s${placeholders.size}` };
      placeholders.set(sql, query);
    }
    return { ...query, values };
  }
  const topics = topicListeners();
  /** A transaction on `client`; `notified` collects its topics, or drops them if undefined. */
  function txOf(client: pg.PoolClient, notified?: Set<string>): Tx {
    return {
      dialect: "postgres",
      run: async (sql, ...params) => (await client.query(prepared(sql, params))).rowCount ?? 0,
      get: async <T>(sql: string, ...params: SqlValue[]) =>
        (await client.query(prepared(sql, params))).rows[0] as T | undefined,
      all: async <T>(sql: string, ...params: SqlValue[]) =>
        (await client.query(prepared(sql, params))).rows as T[],
      notify: (topic) => void notified?.add(topic),
    };
  }
  async function withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect();
    // A connection lost between two queries is emitted as an event that nobody hears while the
    // client is checked out, which would crash the process; the next query fails with it instead.
    client.on("error", ignoreError);
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (error) {
      broken = error as Error;
      throw error;
    } finally {
      client.off("error", ignoreError);
      // A client whose transaction failed oddly is discarded rather than reused.
      client.release(broken && !(broken instanceof pg.DatabaseError) ? broken : undefined);
    }
  }
  let closing: Promise<void> | undefined;
  const store: Store = {
    dialect: "postgres",
    async transaction(fn, options = {}) {
      const { durable = true } = options;
      for (let run = 1;; run++) {
        const notified = new Set<string>();
        try {
          return await withClient(async (client) => {
            await client.query("BEGIN");
            if (!durable) await client.query("SET LOCAL synchronous_commit = off");
            try {
              const result = await fn(txOf(client, notified));
              await client.query("COMMIT");
              topics.announce(notified);
              return result;
            } catch (error) {
              await client.query("ROLLBACK").catch(() => {});
              throw error;
            }
          });
        } catch (error) {
          const rerun = error instanceof pg.DatabaseError && RERUN_SQLSTATES.has(error.code ?? "");
          if (!rerun || run >= TRANSACTION_RUNS) throw error;
          // A random pause lets the other transaction commit before this one takes its locks again.
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * run));
        }
      }
    },
    read: (fn) => withClient((client) => fn(txOf(client))),
    listen: topics.listen,
    ping: () => withClient(async (client) => void await client.query("SELECT 1")),
    probe: () => probeStore(store),
    isOutage: (error) => isPostgresOutage(error, pg.DatabaseError),
    close: () => closing ??= pool.end(),
  };
  async function createSchemaAndMigrate(): Promise<void> {
    await withClient(async (client) => {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`).catch(async (error) => {
        // Two instances starting together may race to create it; the loser finds it there.
        if (
          !(await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schema])).rowCount
        ) {
          throw error;
        }
      });
    });
    await withClient(async (client) => {
      await client.query("BEGIN");
      try {
        // Instances starting together migrate one at a time.
        await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`migrate ${schema}`]);
        // A script without parameters goes as a simple query, which may hold several statements.
        await migrate(txOf(client), migrations, {
          runScript: (migration) => client.query(migration.postgres ?? migration.sql),
        });
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw error;
      }
    });
  }
  const unreachable = waitForServer &&
    failureStreak(waitForServer.log, {
      failing: "cannot reach the database, retrying",
      recovered: "reached the database",
    });
  while (true) {
    try {
      await createSchemaAndMigrate();
      unreachable?.succeeded();
      return store;
    } catch (error) {
      if (!unreachable || !store.isOutage(error)) {
        await pool.end().catch(() => {});
        throw error;
      }
      const failures = unreachable.failed(error);
      await new Promise((resolve) => setTimeout(resolve, backoffDelayMs(failures, START_BACKOFF)));
    }
  }
}

function ignoreError(): void {}
