import assert from "node:assert/strict";
import { join } from "node:path";
import type { Store } from "./store.ts";
import { readCounter, readNotes, TEST_TABLES_MIGRATIONS } from "./testing/test_tables.ts";
import { openSqliteStore } from "./sqlite_store.ts";
import { mountTmpfs, tmpfsUnavailable } from "./testing/tmpfs.ts";
import { describeError } from "./log.ts";

/** Runs `fn` with a SQLite store in a temporary directory, and removes both after. */
async function withSqliteStore(fn: (store: Store, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_store_test_" });
  try {
    const store = await openSqliteStore(dir, "test", { migrations: TEST_TABLES_MIGRATIONS });
    try {
      await fn(store, dir);
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("openSqliteStore() creates <dataDir>/<name>.db, also in a directory that does not exist yet", async () => {
  const parent = await Deno.makeTempDir({ prefix: "sqlite_store_test_" });
  try {
    const dir = join(parent, "nested", "data");
    const store = await openSqliteStore(dir, "test", { migrations: TEST_TABLES_MIGRATIONS });
    await store.close();
    assert.ok((await Deno.stat(join(dir, "test.db"))).isFile);
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("openSqliteStore() turns on WAL journal mode and synchronous FULL", async () => {
  await withSqliteStore(async (store) => {
    const mode = await store.read((tx) => tx.get<{ journal_mode: string }>("PRAGMA journal_mode"));
    assert.equal(mode?.journal_mode, "wal");
    const sync = await store.read((tx) => tx.get<{ synchronous: number }>("PRAGMA synchronous"));
    assert.equal(sync?.synchronous, 2);
  });
});

Deno.test("transaction() runs one process's transactions one after another", async () => {
  await withSqliteStore(async (store) => {
    const rounds = 50;
    await Promise.all(Array.from({ length: rounds }, () =>
      store.transaction(async (tx) => {
        const row = await tx.get<{ n: number }>("SELECT n FROM counter WHERE id = 1");
        // Yield between the read and the write: an interleaving transaction would read the
        // same value and one increment would be lost.
        await new Promise((resolve) => setTimeout(resolve, 0));
        await tx.run("UPDATE counter SET n = ? WHERE id = 1", row!.n + 1);
      })));
    assert.equal(await readCounter(store), rounds);
  });
});

/** Frames in the write-ahead log: each commit appends at least one. */
function walFrames(store: Store): Promise<number> {
  return store.read(async (tx) =>
    (await tx.get<{ log: number }>("PRAGMA wal_checkpoint(PASSIVE)"))!.log
  );
}

Deno.test("transaction() commits transactions that wait together as one group", async () => {
  await withSqliteStore(async (store) => {
    const insert = (text: string) =>
      store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES (?)", text));
    await store.read((tx) => tx.get("PRAGMA wal_checkpoint(TRUNCATE)"));
    for (let i = 0; i < 20; i++) await insert(`alone ${i}`);
    const alone = await walFrames(store);
    assert.ok(alone >= 20, `20 transactions one after another wrote ${alone} WAL frames`);

    await store.read((tx) => tx.get("PRAGMA wal_checkpoint(TRUNCATE)"));
    const results = await Promise.allSettled(
      Array.from(
        { length: 20 },
        (_, i) => i === 7 ? insert(null as never) : insert(`group ${i}`),
      ),
    );
    const grouped = await walFrames(store);
    assert.ok(grouped < 5, `20 transactions at once wrote ${grouped} WAL frames`);
    // The member that failed rolled back alone.
    assert.equal(results.filter((r) => r.status === "rejected").length, 1);
    assert.equal((await readNotes(store)).filter((text) => text.startsWith("group")).length, 19);
  });
});

Deno.test("listen() hears a group's commit once, and not the topic of a member that rolled back alone", async () => {
  await withSqliteStore(async (store) => {
    const heard: string[] = [];
    store.listen("notes", () => heard.push("notes"));
    store.listen("failed", () => heard.push("failed"));
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        store.transaction(async (tx) => {
          if (i === 3) {
            tx.notify("failed");
            throw new Error("Cannot write the note");
          }
          tx.notify("notes");
          await tx.run("INSERT INTO notes (text) VALUES (?)", `group ${i}`);
        })),
    );
    assert.equal(results.filter((r) => r.status === "rejected").length, 1);
    assert.equal((await readNotes(store)).length, 9);
    assert.deepEqual(heard, ["notes"]);
  });
});

Deno.test("transaction({ durable: false }) commits, and later commits are durable again", async () => {
  await withSqliteStore(async (store, dir) => {
    await store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES ('fast')"), {
      durable: false,
    });
    const sync = await store.read((tx) => tx.get<{ synchronous: number }>("PRAGMA synchronous"));
    assert.equal(sync?.synchronous, 2);
    await store.close();
    const reopened = await openSqliteStore(dir, "test", { migrations: TEST_TABLES_MIGRATIONS });
    try {
      assert.deepEqual(await readNotes(reopened), ["fast"]);
    } finally {
      await reopened.close();
    }
  });
});

Deno.test({
  name: "isOutage() is true for a full disk, and probe() passes once it has room again",
  ignore: (await tmpfsUnavailable()) !== undefined,
  fn: async () => {
    const disk = await mountTmpfs(4);
    try {
      const store = await openSqliteStore(disk.path, "test", {
        migrations: TEST_TABLES_MIGRATIONS,
      });
      try {
        await disk.fill();
        const full = await store.transaction((tx) =>
          tx.run("INSERT INTO notes (text) VALUES (?)", "x".repeat(64 * 1024))
        ).then(() => undefined, (error) => error);
        assert.ok(full, "the write failed");
        assert.ok(store.isOutage(full), describeError(full));
        await assert.rejects(store.probe());
        await store.ping();
        await disk.free();
        await store.probe();
        await store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES (?)", "after"));
        assert.deepEqual(await readNotes(store), ["after"]);
      } finally {
        await store.close();
      }
    } finally {
      await disk.unmount();
    }
  },
});

Deno.test("transaction() on a store closed under it rejects rather than waiting for ever", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_store_test_" });
  try {
    const store = await openSqliteStore(dir, "test", { migrations: TEST_TABLES_MIGRATIONS });
    await store.close();
    const outcome = await Promise.race([
      store.transaction((tx) => tx.run("UPDATE counter SET n = n + 1")).then(
        () => "committed",
        () => "rejected",
      ),
      new Promise((resolve) => setTimeout(resolve, 5_000, "still waiting")),
    ]);
    assert.equal(outcome, "rejected");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
