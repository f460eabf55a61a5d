/**
 * The SQLite store (through `node:sqlite`), the embedded default: one file per service, one
 * connection per process, and group commit, so that transactions that wait together share one
 * COMMIT and one fsync.
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import type { SqlValue, Store, StoreOptions, TransactionOptions, Tx } from "./store.ts";
import { isSqliteOutage } from "./database_errors.ts";
import { migrate } from "./migrations.ts";
import { probeStore } from "./store_probe.ts";
import { topicListeners } from "./store_topics.ts";

/**
 * Opens the SQLite store `<dataDir>/<name>.db`, creating the directory and the file if need be,
 * and applies its pending migrations.
 *
 * It runs in WAL mode with `synchronous=FULL`, so a commit is on disk before the message it
 * handled is acked: a power cut cannot undo an effect whose message the broker has forgotten.
 */
export async function openSqliteStore(
  dataDir: string,
  name: string,
  options: Pick<StoreOptions, "migrations">,
): Promise<Store> {
  await Deno.mkdir(dataDir, { recursive: true });
  const db = new DatabaseSync(join(dataDir, `${name}.db`));
  // The timeout first: switching to WAL needs a lock that another process may hold for a moment.
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = FULL");
  const store = sqliteStore(db);
  await store.transaction(async (tx) => {
    await migrate(tx, options.migrations, { runScript: (migration) => db.exec(migration.sql) });
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
      if (db.isOpen && db.isTransaction) db.exec("ROLLBACK");
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
    probe: () => probeStore(store),
    isOutage: isSqliteOutage,
    close: () =>
      exclusive(() => {
        if (db.isOpen) db.close();
        return Promise.resolve();
      }),
  };
  return store;
}
