/**
 * The store: transactions over the service's database, and its schema migrations. This is the only
 * module that knows SQLite (through `node:sqlite`, the embedded default) from PostgreSQL (through
 * `pg`, for scale-out); everything else speaks {@linkcode Tx} with `?` placeholders and portable SQL.
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { setImmediate } from "node:timers";
// @ts-types="@types/pg"
import type pg from "pg";
import { describeError, errorChain, type Logger } from "./log.ts";

/** A value bound to a `?` placeholder. */
export type SqlValue = string | number | null | Uint8Array;

/** Which database is underneath, for the rare statement that must differ. */
export type Dialect = "sqlite" | "postgres";

/**
 * The elements of a JSON array bound to one `?`, as a table of `value` (the element as text) and
 * `position` (its order): how one statement takes a whole batch, on either database.
 */
export function jsonArrayTable(dialect: Dialect): string {
  return dialect === "postgres"
    ? "json_array_elements_text(?::json) WITH ORDINALITY AS elements (value, position)"
    : "(SELECT value, key AS position FROM json_each(?)) AS elements";
}

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

/** The statements one transaction can run; every call is a prepared statement. */
export interface Tx {
  readonly dialect: Dialect;
  /** Runs a write; resolves to how many rows it changed. */
  run(sql: string, ...params: SqlValue[]): Promise<number>;
  /** The first row, or undefined. */
  get<T>(sql: string, ...params: SqlValue[]): Promise<T | undefined>;
  all<T>(sql: string, ...params: SqlValue[]): Promise<T[]>;
  /**
   * Calls the store's listeners of `topic` (see {@linkcode Store.listen}) once this transaction
   * has committed; never if it rolls back. As PostgreSQL's NOTIFY, but within this process.
   */
  notify(topic: string): void;
}

/** Options for {@linkcode Store.transaction}. */
export interface TransactionOptions {
  /**
   * `false` lets the commit return before it reaches the disk: a crash of the process cannot undo
   * it, a power cut can. Only for writes whose loss is harmless, such as deleting outbox rows the
   * broker confirmed (a lost delete publishes the event again and the inboxes absorb it).
   * @default {true}
   */
  durable?: boolean;
}

/** A service's database. */
export interface Store {
  readonly dialect: Dialect;
  /**
   * Runs `fn` in one transaction: all its writes commit together, durably, or none do. On SQLite,
   * transactions that wait together share one commit (and one fsync), each still committing or
   * rolling back on its own. On PostgreSQL, a transaction aborted for a deadlock or a
   * serialization failure runs again (up to 5 times), so whatever `fn` does outside the database
   * must be safe to repeat.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Runs reads that need no transaction; a `notify` there is dropped. */
  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * Calls `listener` after each commit of transactions that called `tx.notify(topic)`, once per
   * commit however many did (on SQLite a commit serves a group), and before the committing calls
   * resume; returns an off switch.
   */
  listen(topic: string, listener: () => void): () => void;
  /** Resolves when the database answers; for `/ready`. */
  ping(): Promise<void>;
  /**
   * Resolves when the database takes a write and commits it: what the end of an outage is, as a
   * full disk still answers reads.
   */
  probe(): Promise<void>;
  /**
   * True when `error` (or one of its causes) says the database cannot be reached or written (it is
   * unreachable, lost the connection, is shutting down, out of connections, disk or memory, or
   * read-only), rather than that a statement failed for its data: an outage, which pauses
   * consumers instead of failing their messages.
   */
  isOutage(error: unknown): boolean;
  close(): Promise<void>;
}

/** A named schema change; applied once, in order, at start. */
export interface Migration {
  name: string;
  /** The script, for both databases unless `postgres` is given. */
  sql: string;
  /** The PostgreSQL script, where its dialect differs. */
  postgres?: string;
}

/** Options for {@linkcode openStore}. */
export interface StoreOptions {
  /** The service's migrations, in order, including those of the inbox and outbox it uses. */
  migrations: Migration[];
  /**
   * A `postgres://` URL: the service's tables live in the schema `<name>_service` of that database,
   * shared by every instance of the service. @default {SQLite under `dataDir`}
   */
  databaseUrl?: string;
  /**
   * Wait for a PostgreSQL server that cannot be reached at start (down, starting up, refusing
   * connections), trying again with backoff and a line in `log` when it first fails, instead of
   * rejecting at once: a service started before its database comes up when it does.
   * @default {reject at once}
   */
  waitForServer?: { log: Logger };
}

/** The longest pause between two attempts to reach a PostgreSQL server at start, in milliseconds. */
const MAX_START_RETRY_MS = 5000;

/**
 * Opens the store of the service `name` and applies its pending migrations: SQLite in
 * `<dataDir>/<name>.db`, or PostgreSQL at `options.databaseUrl`.
 *
 * SQLite runs in WAL mode with `synchronous=FULL`, so a commit is on disk before the message it
 * handled is acked: a power cut cannot undo an effect whose message the broker has forgotten.
 */
export async function openStore(
  dataDir: string,
  name: string,
  options: StoreOptions,
): Promise<Store> {
  if (options.databaseUrl) return await openPostgres(options.databaseUrl, name, options);
  await Deno.mkdir(dataDir, { recursive: true });
  const db = new DatabaseSync(join(dataDir, `${name}.db`));
  // The timeout first: switching to WAL needs a lock that another process may hold for a moment.
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  const store = sqliteStore(db);
  await store.transaction(async (tx) => {
    await migrate(tx, options.migrations, (migration) => db.exec(migration.sql));
  });
  return store;
}

/** A transaction waiting for its group's turn. */
interface GroupMember {
  fn: (tx: Tx) => Promise<unknown>;
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

function sqliteStore(db: DatabaseSync): Store {
  const topics = topicListeners();
  /** What the group member running now notified; undefined outside a transaction. */
  let notified: Set<string> | undefined;
  const statements = new Map<string, StatementSync>();
  function prepare(sql: string): StatementSync {
    let statement = statements.get(sql);
    if (!statement) statements.set(sql, statement = db.prepare(sql));
    return statement;
  }
  const tx: Tx = {
    dialect: "sqlite",
    run: (sql, ...params) => Promise.resolve(Number(prepare(sql).run(...params).changes)),
    get: <T>(sql: string, ...params: SqlValue[]) =>
      Promise.resolve(prepare(sql).get(...params) as T | undefined),
    all: <T>(sql: string, ...params: SqlValue[]) =>
      Promise.resolve(prepare(sql).all(...params) as T[]),
    notify: (topic) => void notified?.add(topic),
  };
  // One connection serves the whole process: work takes turns, so the awaits inside one
  // transaction never interleave with another's statements.
  let turn: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = turn.then(fn);
    turn = result.catch(() => {});
    return result;
  }
  // Group commit: the transactions that queued up while the previous turn ran share one COMMIT,
  // so one fsync makes a whole group durable instead of one each. Each member still commits or
  // rolls back on its own (a savepoint), and resolves only once the group's COMMIT is on disk.
  // The group starts from setImmediate, after the event loop took in the requests and deliveries
  // waiting on sockets, rather than right after the previous commit, when it would hold one.
  let waiting: GroupMember[] = [];
  async function commitGroup(group: GroupMember[]): Promise<void> {
    const settled: Array<() => void> = [];
    const committed = new Set<string>();
    // In WAL mode, NORMAL skips the fsync of this commit only; the next FULL commit covers it too.
    const durable = group.some((member) => member.durable);
    if (!durable) db.exec("PRAGMA synchronous = NORMAL");
    try {
      db.exec("BEGIN IMMEDIATE");
      for (const member of group) {
        db.exec("SAVEPOINT group_member");
        notified = new Set();
        try {
          const result = await member.fn(tx);
          db.exec("RELEASE group_member");
          for (const topic of notified) committed.add(topic);
          settled.push(() => member.resolve(result));
        } catch (error) {
          // Some errors (disk full, I/O) end the whole transaction: then the group fails below.
          if (!db.isTransaction) throw error;
          db.exec("ROLLBACK TO group_member");
          db.exec("RELEASE group_member");
          settled.push(() => member.reject(error));
        }
      }
      db.exec("COMMIT");
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      for (const member of group) member.reject(error);
      return;
    } finally {
      notified = undefined;
      if (!durable && db.isOpen) db.exec("PRAGMA synchronous = FULL");
    }
    topics.announce(committed);
    for (const settle of settled) settle();
  }
  const store: Store = {
    dialect: "sqlite",
    transaction: <T>(fn: (tx: Tx) => Promise<T>, options: TransactionOptions = {}) =>
      new Promise<T>((resolve, reject) => {
        const { durable = true } = options;
        waiting.push({ fn, durable, resolve: resolve as (value: unknown) => void, reject });
        if (waiting.length > 1) return;
        setImmediate(() =>
          void exclusive(() => {
            const group = waiting;
            waiting = [];
            return commitGroup(group);
          })
        );
      }),
    read: (fn) => exclusive(() => fn(tx)),
    listen: topics.listen,
    ping: () => exclusive(() => Promise.resolve(void prepare("SELECT 1").get())),
    probe: () => probe(store),
    isOutage: (error) => errorChain(error).some(isSqliteOutage),
    close: () =>
      exclusive(() => {
        if (db.isOpen) db.close();
        return Promise.resolve();
      }),
  };
  return store;
}

/**
 * Errors for which PostgreSQL aborts a transaction only because of another one running beside it
 * (`deadlock_detected`, `serialization_failure`): running it again is the remedy it documents.
 * Instances consuming one queue in batches lock stock rows in different orders, so they happen.
 */
const RERUN_SQLSTATES = new Set(["40P01", "40001"]);

/** Runs of a transaction that PostgreSQL keeps aborting for a deadlock, before its error is thrown. */
const TRANSACTION_RUNS = 5;

async function openPostgres(url: string, name: string, options: StoreOptions): Promise<Store> {
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
    probe: () => probe(store),
    isOutage: (error) =>
      errorChain(error).some((e) =>
        e instanceof pg.DatabaseError ? isPostgresOutage(e.code) : isConnectionLost(e)
      ),
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
        await migrate(txOf(client), migrations, (m) => client.query(m.postgres ?? m.sql));
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw error;
      }
    });
  }
  for (let failures = 0;; failures++) {
    try {
      await createSchemaAndMigrate();
      if (failures > 0) {
        waitForServer?.log.info("reached the database", { failed_attempts: failures });
      }
      return store;
    } catch (error) {
      if (!waitForServer || !store.isOutage(error)) {
        await pool.end().catch(() => {});
        throw error;
      }
      if (failures === 0) {
        waitForServer.log.warn("cannot reach the database, retrying", {
          error: describeError(error),
        });
      }
      const ceiling = Math.min(MAX_START_RETRY_MS, 200 * 2 ** Math.min(failures, 8));
      await new Promise((resolve) =>
        setTimeout(resolve, ceiling / 2 + Math.random() * ceiling / 2)
      );
    }
  }
}

async function migrate(
  tx: Tx,
  migrations: Migration[],
  runScript: (migration: Migration) => unknown,
): Promise<void> {
  await tx.run(
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
  );
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

/** Writes one row of the store's own and commits: see {@linkcode Store.probe}. */
async function probe(store: Store): Promise<void> {
  await store.transaction((tx) =>
    tx.run(
      `INSERT INTO store_probe (probe_id, probed_at) VALUES (1, ?)
       ON CONFLICT (probe_id) DO UPDATE SET probed_at = excluded.probed_at`,
      new Date().toISOString(),
    )
  );
}

/** The listeners of each topic of a store; see {@linkcode Store.listen}. */
function topicListeners(): {
  listen: Store["listen"];
  announce(topics: ReadonlySet<string>): void;
} {
  const listeners = new Map<string, Set<() => void>>();
  return {
    listen(topic, listener) {
      const set = listeners.get(topic) ?? new Set();
      listeners.set(topic, set.add(listener));
      return () => void set.delete(listener);
    },
    announce(topics) {
      for (const topic of topics) {
        // Queued, not called: a listener that throws must not turn a commit into a failure.
        for (const listener of listeners.get(topic) ?? []) queueMicrotask(listener);
      }
    },
  };
}

function ignoreError(): void {}

/**
 * SQLite's messages (`sqlite3_errstr`, as `node:sqlite` reports them) for a file it cannot write:
 * SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, and SQLITE_BUSY once the busy
 * timeout has passed (another process holds the lock). A constraint or a syntax error is not here.
 */
const SQLITE_OUTAGE =
  /database or disk is full|disk I\/O error|readonly database|unable to open database file|database is locked/;

function isSqliteOutage(error: unknown): boolean {
  return error instanceof Error && SQLITE_OUTAGE.test(error.message);
}

/**
 * SQLSTATEs of a server that cannot serve, whatever the statement: class 08 (connection
 * exception), 53 (insufficient resources: disk full, out of memory, too many connections), 57P01–
 * 57P05 (administrator or crash shutdown, cannot connect now, idle session timeout), 58 (system or
 * I/O error), and 25006 (read-only: connected to a standby after a failover).
 */
function isPostgresOutage(code: string | undefined): boolean {
  return code !== undefined &&
    (/^(08|53|58)/.test(code) || /^57P0[1-5]$/.test(code) || code === "25006");
}

/** The driver's own errors, and the socket's, for a server it cannot reach or lost. */
const CONNECTION_LOST =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout)/;
const SOCKET_ERRORS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

function isConnectionLost(error: unknown): boolean {
  return error instanceof Error &&
    (SOCKET_ERRORS.has((error as { code?: string }).code ?? "") ||
      CONNECTION_LOST.test(error.message));
}
