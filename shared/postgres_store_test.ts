import assert from "node:assert/strict";
import type { Migration, Store } from "./store.ts";
import { openPostgresStore } from "./postgres_store.ts";
import { postgresUnavailable, queryAdmin } from "./testing/stores.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { describeError } from "./log.ts";

const DATABASE_URL = Deno.env.get("TEST_DATABASE_URL") ||
  "postgres://postgres@127.0.0.1:5432/postgres";

const MIGRATIONS: Migration[] = [{
  name: "counter",
  sql: `CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
    INSERT INTO counter (id, n) VALUES (1, 0), (2, 0)`,
}];

const ignore = (await postgresUnavailable()) !== undefined;

/** A service name of the test's own, so that its schema is too; dropped by `dropSchema()`. */
function uniqueName(): string {
  return `test_${crypto.randomUUID().slice(0, 8)}`;
}

function dropSchema(name: string): Promise<void> {
  return queryAdmin(`DROP SCHEMA IF EXISTS ${name}_service CASCADE`);
}

/** Runs `fn` with a store of a service of its own on the test server; closes it and drops its schema after. */
async function withPostgresStore(fn: (store: Store, name: string) => Promise<void>): Promise<void> {
  const name = uniqueName();
  const store = await openPostgresStore(DATABASE_URL, name, { migrations: MIGRATIONS });
  try {
    await fn(store, name);
  } finally {
    await store.close();
    await dropSchema(name);
  }
}

/** A URL of the test server at another host and port. */
function urlAt(host: string, port: number, path = new URL(DATABASE_URL).pathname): string {
  const url = new URL(DATABASE_URL);
  url.hostname = host;
  url.port = String(port);
  url.pathname = path;
  return url.toString();
}

/** A port that nothing listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Forwards connections to `port` to the test server, from when it is called until `close()`. */
function forwardToServer(port: number): { close(): Promise<void> } {
  const server = new URL(DATABASE_URL);
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const connections = new Set<Deno.Conn>();
  const pipes: Promise<unknown>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      const upstream = await Deno.connect({
        hostname: server.hostname,
        port: Number(server.port || 5432),
      });
      connections.add(client).add(upstream);
      pipes.push(
        client.readable.pipeTo(upstream.writable).catch(() => {}),
        upstream.readable.pipeTo(client.writable).catch(() => {}),
      );
    }
  })();
  return {
    async close() {
      listener.close();
      await accepting.catch(() => {});
      for (const connection of connections) {
        try {
          connection.close();
        } catch {
          // Closed already by its pipe.
        }
      }
      await Promise.all(pipes);
    },
  };
}

Deno.test({
  name: "transaction() runs a transaction again when PostgreSQL aborts it for a deadlock",
  ignore,
  fn: () =>
    withPostgresStore(async (store) => {
      // Two transactions update the same two rows in opposite orders, each going on to its second
      // row only once both hold their first: PostgreSQL aborts one of them, and it runs again.
      let holding = 0;
      let bothHold!: () => void;
      const barrier = new Promise<void>((resolve) => bothHold = resolve);
      let attempts = 0;
      const update = (first: number, second: number) =>
        store.transaction(async (tx) => {
          attempts++;
          await tx.run("UPDATE counter SET n = n + 1 WHERE id = ?", first);
          if (++holding === 2) bothHold();
          await barrier;
          await tx.run("UPDATE counter SET n = n + 1 WHERE id = ?", second);
        });
      await Promise.all([update(1, 2), update(2, 1)]);
      assert.equal(attempts, 3);
      const rows = await store.read((tx) =>
        tx.all<{ id: number; n: number }>("SELECT id, n FROM counter ORDER BY id")
      );
      assert.deepEqual(rows, [{ id: 1, n: 2 }, { id: 2, n: 2 }]);
    }),
});

Deno.test({
  name:
    "isOutage() is true for a connection PostgreSQL terminates mid-transaction, and for one it refuses",
  ignore,
  fn: () =>
    withPostgresStore(async (store, name) => {
      const terminated = await store.transaction(async (tx) => {
        const { pid } = (await tx.get<{ pid: number }>("SELECT pg_backend_pid() AS pid"))!;
        await queryAdmin(`SELECT pg_terminate_backend(${Number(pid)})`);
        await tx.get("SELECT 1");
      }).then(() => undefined, (error) => error);
      assert.ok(terminated, "the transaction failed");
      assert.ok(store.isOutage(terminated), describeError(terminated));
      // The pool replaces the lost connection: the store serves again.
      await store.probe();
      const refused = await openPostgresStore(urlAt("127.0.0.1", freePort()), name, {
        migrations: [],
      }).then(() => undefined, (error) => error);
      assert.ok(refused, "opening failed");
      assert.ok(store.isOutage(refused), describeError(refused));
    }),
});

Deno.test({
  name:
    "openPostgresStore() with waitForServer waits for a server that refuses, logging once when it fails and once when it answers",
  ignore,
  fn: async () => {
    const name = uniqueName();
    const port = freePort();
    const { log, lines } = recordingLogger();
    const { promise: failedOnce, resolve: onWarning } = Promise.withResolvers<void>();
    const opening = openPostgresStore(urlAt("127.0.0.1", port), name, {
      migrations: MIGRATIONS,
      waitForServer: {
        log: {
          ...log,
          warn: (msg, fields) => {
            log.warn(msg, fields);
            onWarning();
          },
        },
      },
    });
    await failedOnce;
    const forwarding = forwardToServer(port);
    try {
      const store = await opening;
      try {
        const row = await store.read((tx) => tx.get<{ n: number }>("SELECT n FROM counter"));
        assert.equal(row?.n, 0);
      } finally {
        await store.close();
      }
      assert.deepEqual(lines, [
        "warn cannot reach the database, retrying",
        "info reached the database",
      ]);
    } finally {
      await forwarding.close();
      await dropSchema(name);
    }
  },
});

Deno.test({
  name: "openPostgresStore() with waitForServer rejects at once for an error that is not an outage",
  ignore,
  fn: async () => {
    const { log, lines } = recordingLogger();
    const url = urlAt(
      new URL(DATABASE_URL).hostname,
      Number(new URL(DATABASE_URL).port || 5432),
      "/no_such_database",
    );
    await assert.rejects(
      openPostgresStore(url, uniqueName(), { migrations: MIGRATIONS, waitForServer: { log } }),
      /no_such_database/,
    );
    assert.deepEqual(lines, []);
  },
});
