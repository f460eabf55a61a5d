/**
 * The store: transactions over the service's database, and its schema migrations. This is the only
 * module that knows which database is underneath (SQLite through `node:sqlite` today); everything
 * else speaks {@linkcode Tx} with `?` placeholders and portable SQL.
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";

/** A value bound to a `?` placeholder. */
export type SqlValue = string | number | null | Uint8Array;

/** The statements one transaction can run; every call is a cached prepared statement. */
export interface Tx {
  /** Runs a write; resolves to how many rows it changed. */
  run(sql: string, ...params: SqlValue[]): Promise<number>;
  /** The first row, or undefined. */
  get<T>(sql: string, ...params: SqlValue[]): Promise<T | undefined>;
  all<T>(sql: string, ...params: SqlValue[]): Promise<T[]>;
}

/** A service's database. */
export interface Store {
  /** Runs `fn` in one transaction: all its writes commit together, durably, or none do. */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Runs reads that need no transaction. */
  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Resolves when the database answers; for `/ready`. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A named schema change; applied once, in order, at start. */
export interface Migration {
  name: string;
  sql: string;
}

/** Options for {@linkcode openStore}. */
export interface StoreOptions {
  /** The service's migrations, in order, including those of the inbox and outbox it uses. */
  migrations: Migration[];
}

/**
 * Opens (creating if needed) `<dataDir>/<name>.db` and applies the pending migrations.
 *
 * SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk before the message it
 * handled is acked: a power cut cannot undo an effect whose message the broker has forgotten.
 */
export async function openStore(
  dataDir: string,
  name: string,
  options: StoreOptions,
): Promise<Store> {
  await Deno.mkdir(dataDir, { recursive: true });
  const db = new DatabaseSync(join(dataDir, `${name}.db`));
  // The timeout first: switching to WAL needs a lock that another process may hold for a moment.
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  const store = sqliteStore(db);
  await migrate(store, options.migrations, (sql) => db.exec(sql));
  return store;
}

function sqliteStore(db: DatabaseSync): Store {
  const statements = new Map<string, StatementSync>();
  function prepare(sql: string): StatementSync {
    let statement = statements.get(sql);
    if (!statement) statements.set(sql, statement = db.prepare(sql));
    return statement;
  }
  const tx: Tx = {
    run: (sql, ...params) => Promise.resolve(Number(prepare(sql).run(...params).changes)),
    get: <T>(sql: string, ...params: SqlValue[]) =>
      Promise.resolve(prepare(sql).get(...params) as T | undefined),
    all: <T>(sql: string, ...params: SqlValue[]) =>
      Promise.resolve(prepare(sql).all(...params) as T[]),
  };
  // One connection serves the whole process: transactions take turns, so the awaits inside one
  // never interleave with another's statements.
  let turn: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = turn.then(fn);
    turn = result.catch(() => {});
    return result;
  }
  return {
    transaction: (fn) =>
      exclusive(async () => {
        db.exec("BEGIN IMMEDIATE");
        try {
          const result = await fn(tx);
          db.exec("COMMIT");
          return result;
        } catch (error) {
          if (db.isTransaction) db.exec("ROLLBACK");
          throw error;
        }
      }),
    read: (fn) => exclusive(() => fn(tx)),
    ping: () => exclusive(() => Promise.resolve(void prepare("SELECT 1").get())),
    close: () =>
      exclusive(() => {
        if (db.isOpen) db.close();
        return Promise.resolve();
      }),
  };
}

async function migrate(
  store: Store,
  migrations: Migration[],
  execScript: (sql: string) => void,
): Promise<void> {
  await store.transaction(async (tx) => {
    await tx.run(
      "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
    );
    for (const { name, sql } of migrations) {
      if (await tx.get("SELECT 1 FROM schema_migrations WHERE name = ?", name)) continue;
      execScript(sql);
      await tx.run(
        "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
        name,
        new Date().toISOString(),
      );
    }
  });
}
