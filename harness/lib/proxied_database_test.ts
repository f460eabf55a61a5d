/**
 * Integration test of the proxied database, against PostgreSQL where it answers.
 */
import assert from "node:assert/strict";
// @ts-types="@types/pg"
import pg from "pg";
import { ON_POSTGRES } from "./on_postgres.ts";
import { createProxiedDatabase } from "./proxied_database.ts";

/** The server the database is made on, as `createDatabase()` picks it. */
const ADMIN_URL = Deno.env.get("TEST_DATABASE_URL") ||
  "postgres://postgres@127.0.0.1:5432/postgres";

/** The rows of `sql` run at `url` with `values`. */
async function query(url: string, sql: string, values: unknown[] = []): Promise<unknown[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql, values)).rows;
  } finally {
    await client.end();
  }
}

Deno.test(
  "createProxiedDatabase() reaches a database of its own through the proxy and directly, both gone after close()",
  ON_POSTGRES,
  async () => {
    const database = await createProxiedDatabase();
    const name = new URL(database.url).pathname.slice(1);
    try {
      assert.equal(new URL(database.url).port, String(database.proxy.port));
      assert.deepEqual(await query(database.url, "SELECT current_database() AS name"), [{ name }]);
      // Cut, the proxy leaves the database's own URL working: the other services' way to it.
      database.proxy.cut();
      assert.deepEqual(
        await query(database.directUrl, "SELECT current_database() AS name"),
        [{ name }],
      );
      database.proxy.restore();
    } finally {
      await database.close();
    }
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: database.proxy.port }));
    const left = await query(ADMIN_URL, "SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    assert.deepEqual(left, []);
  },
);
