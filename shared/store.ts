/**
 * The store: transactions over the service's database, and its schema migrations. Everything
 * outside the store's own modules speaks {@linkcode Tx} with `?` placeholders and portable SQL,
 * and opens a store with {@linkcode openStore}, which alone chooses between SQLite
 * (`sqlite_store.ts`, the embedded default) and PostgreSQL (`postgres_store.ts`, for scale-out).
 * @module
 */
import type { Logger } from "./log.ts";
import { openPostgresStore } from "./postgres_store.ts";
import { openSqliteStore } from "./sqlite_store.ts";

export { lockForTransaction, tryLockForTransaction } from "./store_locks.ts";

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
  const { databaseUrl, ...rest } = options;
  return databaseUrl
    ? await openPostgresStore(databaseUrl, name, rest)
    : await openSqliteStore(dataDir, name, rest);
}
