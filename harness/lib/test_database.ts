/**
 * A PostgreSQL database of its own for one test or scenario, on the server of `TEST_DATABASE_URL`
 * (the local server as `postgres` by default), dropped afterwards.
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";

/** A PostgreSQL database of its own, for a stack that runs on `DATABASE_URL`. */
export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates a uniquely named database on the server of `adminUrl`, for one scenario or test.
 * @param adminUrl a superuser's URL @default {`TEST_DATABASE_URL`, else the local server as `postgres`}
 */
export async function createDatabase(
  adminUrl = Deno.env.get("TEST_DATABASE_URL") || "postgres://postgres@127.0.0.1:5432/postgres",
): Promise<TestDatabase> {
  const name = `campus_food_test_${crypto.randomUUID().slice(0, 8)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
