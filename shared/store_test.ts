import assert from "node:assert/strict";
import { join } from "node:path";
import { type Migration, openStore, type Store } from "./store.ts";

const MIGRATIONS: Migration[] = [
  { name: "counter", sql: "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)" },
  {
    name: "notes",
    sql: `CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
      INSERT INTO counter (id, n) VALUES (1, 0)`,
  },
];

/** Runs `fn` with a store in a fresh temp dir, closing the store and removing the dir after. */
async function withStore(fn: (store: Store, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "store_test_" });
  try {
    const store = await openStore(dir, "test", { migrations: MIGRATIONS });
    try {
      await fn(store, dir);
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function counter(store: Store): Promise<number | undefined> {
  return store.read(async (tx) =>
    (await tx.get<{ n: number }>("SELECT n FROM counter WHERE id = 1"))?.n
  );
}

Deno.test("openStore() creates the database file and applies every migration", async () => {
  await withStore(async (store, dir) => {
    const stat = await Deno.stat(join(dir, "test.db"));
    assert.ok(stat.isFile);
    const applied = await store.read((tx) =>
      tx.all<{ name: string }>("SELECT name FROM schema_migrations ORDER BY name")
    );
    assert.deepEqual(applied.map((row) => row.name), ["counter", "notes"]);
    assert.equal(await counter(store), 0);
  });
});

Deno.test("openStore() creates a data directory that does not exist yet", async () => {
  const parent = await Deno.makeTempDir({ prefix: "store_test_" });
  try {
    const dir = join(parent, "nested", "data");
    const store = await openStore(dir, "test", { migrations: MIGRATIONS });
    await store.close();
    assert.ok((await Deno.stat(join(dir, "test.db"))).isFile);
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("openStore() applies migrations once: reopening keeps the data", async () => {
  await withStore(async (store, dir) => {
    await store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES (?)", "kept"));
    await store.transaction((tx) => tx.run("UPDATE counter SET n = 7 WHERE id = 1"));
    await store.close();

    const reopened = await openStore(dir, "test", { migrations: MIGRATIONS });
    try {
      const notes = await reopened.read((tx) => tx.all<{ text: string }>("SELECT text FROM notes"));
      assert.deepEqual(notes.map((row) => row.text), ["kept"]);
      // The "notes" migration seeds the counter: running it twice would reset or duplicate it.
      assert.equal(await counter(reopened), 7);
      const applied = await reopened.read((tx) =>
        tx.get<{ count: number }>("SELECT count(*) AS count FROM schema_migrations")
      );
      assert.equal(applied?.count, 2);
    } finally {
      await reopened.close();
    }
  });
});

Deno.test("openStore() applies a migration added later on reopen", async () => {
  await withStore(async (store, dir) => {
    await store.close();
    const more = [...MIGRATIONS, { name: "extra", sql: "CREATE TABLE extra (id INTEGER)" }];
    const reopened = await openStore(dir, "test", { migrations: more });
    try {
      await reopened.transaction((tx) => tx.run("INSERT INTO extra (id) VALUES (1)"));
      const row = await reopened.read((tx) =>
        tx.get<{ count: number }>("SELECT count(*) AS count FROM extra")
      );
      assert.equal(row?.count, 1);
    } finally {
      await reopened.close();
    }
  });
});

Deno.test("openStore() turns on WAL journal mode", async () => {
  await withStore(async (store) => {
    const row = await store.read((tx) => tx.get<{ journal_mode: string }>("PRAGMA journal_mode"));
    assert.equal(row?.journal_mode, "wal");
  });
});

Deno.test("transaction() commits the writes of a function that resolves", async () => {
  await withStore(async (store) => {
    const result = await store.transaction(async (tx) => {
      await tx.run("INSERT INTO notes (text) VALUES (?)", "a");
      await tx.run("INSERT INTO notes (text) VALUES (?)", "b");
      return "done";
    });
    assert.equal(result, "done");
    const notes = await store.read((tx) => tx.all<{ text: string }>("SELECT text FROM notes"));
    assert.deepEqual(notes.map((row) => row.text), ["a", "b"]);
  });
});

Deno.test("transaction() rolls back every write when the function throws", async () => {
  await withStore(async (store) => {
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.run("INSERT INTO notes (text) VALUES (?)", "lost");
        await tx.run("UPDATE counter SET n = 99 WHERE id = 1");
        throw new Error("boom");
      }),
      { message: "boom" },
    );
    const notes = await store.read((tx) => tx.all("SELECT * FROM notes"));
    assert.deepEqual(notes, []);
    assert.equal(await counter(store), 0);
    // The store still works after a rollback.
    await store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES (?)", "after"));
    assert.equal((await store.read((tx) => tx.all("SELECT * FROM notes"))).length, 1);
  });
});

Deno.test("transaction() rolls back when a statement fails", async () => {
  await withStore(async (store) => {
    await assert.rejects(store.transaction(async (tx) => {
      await tx.run("INSERT INTO notes (text) VALUES (?)", "lost");
      await tx.run("INSERT INTO notes (text) VALUES (?)", null);
    }));
    assert.deepEqual(await store.read((tx) => tx.all("SELECT * FROM notes")), []);
  });
});

Deno.test("transaction() runs concurrent transactions one after another", async () => {
  await withStore(async (store) => {
    const rounds = 50;
    await Promise.all(Array.from({ length: rounds }, () =>
      store.transaction(async (tx) => {
        const row = await tx.get<{ n: number }>("SELECT n FROM counter WHERE id = 1");
        // Yield to the event loop between the read and the write: an interleaving
        // transaction would read the same value and one increment would be lost.
        await new Promise((resolve) => setTimeout(resolve, 0));
        await tx.run("UPDATE counter SET n = ? WHERE id = 1", row!.n + 1);
      })));
    assert.equal(await counter(store), rounds);
  });
});

Deno.test("transaction() keeps a failing transaction from affecting concurrent ones", async () => {
  await withStore(async (store) => {
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        store.transaction(async (tx) => {
          const row = await tx.get<{ n: number }>("SELECT n FROM counter WHERE id = 1");
          await Promise.resolve();
          await tx.run("UPDATE counter SET n = ? WHERE id = 1", row!.n + 1);
          if (i % 2 === 1) throw new Error(`odd ${i}`);
        })),
    );
    assert.equal(results.filter((r) => r.status === "rejected").length, 5);
    assert.equal(await counter(store), 5);
  });
});

Deno.test("ping() resolves on an open store", async () => {
  await withStore(async (store) => {
    assert.equal(await store.ping(), undefined);
  });
});

Deno.test("close() can be called twice", async () => {
  await withStore(async (store) => {
    await store.close();
    await store.close();
    await assert.rejects(store.ping());
  });
});
