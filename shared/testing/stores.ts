/**
 * The databases tests run against: {@linkcode storeKinds} gives SQLite in a temporary directory
 * and PostgreSQL in a schema of its own on the server at `TEST_DATABASE_URL` (default: the local
 * server), and {@linkcode createDatabase} a whole PostgreSQL database for a stack of services.
 * Where no PostgreSQL answers, its tests are skipped with a line saying so, except under CI, where
 * they run and fail. Nothing connects until a function is called.
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { type Migration, openStore, type Store } from "../store.ts";

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
export async function queryAdmin(sql: string, url = DATABASE_URL): Promise<void> {
  const admin = new pg.Client({ connectionString: url });
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

let reachability: Promise<string | undefined> | undefined;

/** Set in the environment once the skip was said: every test file has a module of its own. */
const SKIP_SAID = "CAMPUS_FOOD_POSTGRES_SKIP_SAID";

/**
 * Why tests that need PostgreSQL are skipped: it did not answer at `TEST_DATABASE_URL`, said in a
 * line once per `deno test` run. Under CI they never are (undefined): there they run, and fail if
 * it is down.
 */
export function postgresUnavailable(): Promise<string | undefined> {
  return reachability ??= (async () => {
    if (Deno.env.get("CI")) return undefined;
    const unreachable = await postgresAnswers();
    if (!unreachable) return undefined;
    const why = `PostgreSQL at ${new URL(DATABASE_URL).host} does not answer (${unreachable})`;
    if (!Deno.env.get(SKIP_SAID)) {
      Deno.env.set(SKIP_SAID, "1");
      console.log(
        `store tests: ${why}; its variants are skipped (set TEST_DATABASE_URL, or start PostgreSQL)`,
      );
    }
    return why;
  })();
}

/** The kinds to run store tests against: SQLite, and PostgreSQL where it answers. */
export async function storeKinds(): Promise<readonly StoreKind[]> {
  return await postgresUnavailable() ? [sqlite] : [sqlite, postgres];
}

/** A PostgreSQL database of its own, for a stack that runs on `DATABASE_URL`. */
export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates a uniquely named database for one test, scenario or bench run, on the server of
 * `adminUrl`.
 * @param adminUrl a superuser's URL @default {`TEST_DATABASE_URL`, else the local server as `postgres`}
 */
export async function createDatabase(adminUrl = DATABASE_URL): Promise<TestDatabase> {
  const name = `campus_food_test_${crypto.randomUUID().slice(0, 8)}`;
  await queryAdmin(`CREATE DATABASE ${name}`, adminUrl);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => queryAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, adminUrl),
  };
}
