/**
 * A Deno process with the services' dependencies loaded and nothing of ours: the AMQP client, Hono,
 * zod and SQLite, each imported and touched once, and the PostgreSQL client when run with
 * `postgres` (a service loads it only with `DATABASE_URL`). The benchmark reads its resident memory
 * as the floor a service's idle memory is judged against.
 * @module
 */
import amqp from "amqplib";
import { Hono } from "hono";
import { z } from "zod";
import { DatabaseSync } from "node:sqlite";

if (import.meta.main) {
  const db = new DatabaseSync(":memory:");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY)");
  const loaded = [typeof amqp.connect, new Hono().routes.length, z.string()];
  if (Deno.args.includes("postgres")) loaded.push(typeof (await import("pg")).default.Pool);
  console.log(`loaded ${loaded.length} dependencies`);
  // Stays up until the benchmark closes its stdin.
  for await (const _ of Deno.stdin.readable) { /* nothing is read */ }
  db.close();
}
