/**
 * The stores that store tests run against: SQLite in a temporary directory, and PostgreSQL in a
 * schema of its own in the database at `TEST_DATABASE_URL` (default: the local server). Where no
 * PostgreSQL answers, its tests are skipped with a line saying so, except under CI, where they run
 * and fail.
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { type Migration, openStore, type Store } from "./store.ts";

/** A kind of store that tests open and clean up. */
export interface StoreKind {
  name: "sqlite" | "postgres";
  /**
   * Runs `fn` with a new, empty store of the service `name` and removes it after. `reopen()`
   * opens the same database again, as a restart would.
   */
  with(
    name: string,
    migrations: Migration[],
    fn: (store: Store, reopen: (migrations?: Migration[]) => Promise<Store>) => Promise<void>,
  ): Promise<void>;
}

const DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ||
  "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * Runs `fn` with a store from `open` and a way to open it again; closes every store it opened,
 * then runs `remove`.
 */
async function withStores(
  open: (migrations: Migration[]) => Promise<Store>,
  options: { migrations: Migration[]; remove: () => Promise<void> },
  fn: Parameters<StoreKind["with"]>[2],
): Promise<void> {
  const opened: Store[] = [];
  const reopen = async (migrations = options.migrations) => {
    const store = await open(migrations);
    opened.push(store);
    return store;
  };
  try {
    await fn(await reopen(), reopen);
  } finally {
    for (const store of opened) await store.close();
    await options.remove();
  }
}

const sqlite: StoreKind = {
  name: "sqlite",
  async with(name, migrations, fn) {
    const dir = await Deno.makeTempDir({ prefix: `${name}_test_` });
    await withStores((m) => openStore(dir, name, { migrations: m }), {
      migrations,
      remove: () => Deno.remove(dir, { recursive: true }),
    }, fn);
  },
};

const postgres: StoreKind = {
  name: "postgres",
  async with(name, migrations, fn) {
    // A unique service name is a schema of its own: tests never see each other's tables.
    const unique = `${name}_${crypto.randomUUID().slice(0, 8)}`;
    await withStores((m) => openStore("", unique, { migrations: m, databaseUrl: DATABASE_URL }), {
      migrations,
      remove: () => queryAdmin(`DROP SCHEMA IF EXISTS ${unique}_service CASCADE`),
    }, fn);
  },
};

/** Runs `sql` on a connection of its own to the PostgreSQL of the tests, beside any store. */
export async function queryAdmin(sql: string): Promise<void> {
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}

async function postgresAnswers(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}

const unreachable = Deno.env.get("CI") ? undefined : await postgresAnswers();

/**
 * Why tests that need PostgreSQL are skipped: it did not answer at `TEST_DATABASE_URL`. Under CI
 * they never are (undefined): there they run, and fail if it is down.
 */
export const POSTGRES_UNAVAILABLE: string | undefined = unreachable &&
  `PostgreSQL at ${new URL(DATABASE_URL).host} does not answer (${unreachable})`;

if (unreachable) {
  console.log(
    `store tests: PostgreSQL at ${new URL(DATABASE_URL).host} does not answer (${unreachable}); ` +
      "its variants are skipped (set TEST_DATABASE_URL, or start PostgreSQL)",
  );
}

/** The kinds to run store tests against. */
export const STORE_KINDS: readonly StoreKind[] = unreachable ? [sqlite] : [sqlite, postgres];
