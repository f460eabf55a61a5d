/** A private PostgreSQL server starts with autovacuum on, answers, and leaves nothing behind. */
import assert from "node:assert/strict";
// @ts-types="@types/pg"
import pg from "pg";
import { findPostgresBin, startPostgresServer } from "./postgres_server.ts";

Deno.test({
  name: "startPostgresServer() runs a server of its own with autovacuum on, and removes it",
  ignore: findPostgresBin() === undefined,
  async fn() {
    const server = await startPostgresServer();
    let stopped = false;
    try {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      try {
        const { rows } = await client.query("SHOW autovacuum");
        assert.equal(rows[0].autovacuum, "on");
      } finally {
        await client.end();
      }
      await server.stop();
      stopped = true;
      await assert.rejects(Deno.stat(server.dir), Deno.errors.NotFound);
      const late = new pg.Client({ connectionString: server.url });
      await assert.rejects(late.connect());
    } finally {
      if (!stopped) await server.stop();
    }
  },
});
