import assert from "node:assert/strict";
import { jsonArrayTable, type Store } from "./store.ts";
import { readCounter, readNotes, TEST_TABLES_MIGRATIONS } from "./testing/test_tables.ts";
import { storeKinds } from "./testing/stores.ts";
import { describeError } from "./log.ts";

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("test", TEST_TABLES_MIGRATIONS, fn);

  Deno.test(`openStore() opens the store of its options' database (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.equal(store.dialect, kind.name);
      assert.equal(await readCounter(store), 0);
    });
  });

  Deno.test(`transaction() commits the writes of a function that resolves (${kind.name})`, async () => {
    await withStore(async (store) => {
      const result = await store.transaction(async (tx) => {
        await tx.run("INSERT INTO notes (text) VALUES (?)", "a");
        await tx.run("INSERT INTO notes (text) VALUES (?)", "b");
        return "done";
      });
      assert.equal(result, "done");
      assert.deepEqual(await readNotes(store), ["a", "b"]);
    });
  });

  Deno.test(`transaction() rolls back every write when the function throws (${kind.name})`, async () => {
    await withStore(async (store) => {
      await assert.rejects(
        store.transaction(async (tx) => {
          await tx.run("INSERT INTO notes (text) VALUES (?)", "lost");
          await tx.run("UPDATE counter SET n = 99 WHERE id = 1");
          throw new Error("boom");
        }),
        { message: "boom" },
      );
      assert.deepEqual(await readNotes(store), []);
      assert.equal(await readCounter(store), 0);
      // The store still works after a rollback.
      await store.transaction((tx) => tx.run("INSERT INTO notes (text) VALUES (?)", "after"));
      assert.deepEqual(await readNotes(store), ["after"]);
    });
  });

  Deno.test(`transaction() rolls back when a statement fails (${kind.name})`, async () => {
    await withStore(async (store) => {
      await assert.rejects(store.transaction(async (tx) => {
        await tx.run("INSERT INTO notes (text) VALUES (?)", "lost");
        await tx.run("INSERT INTO notes (text) VALUES (?)", null);
      }));
      assert.deepEqual(await readNotes(store), []);
    });
  });

  Deno.test(`transaction() loses no conditional update under concurrency (${kind.name})`, async () => {
    await withStore(async (store) => {
      await store.transaction((tx) => tx.run("UPDATE counter SET n = 10 WHERE id = 1"));
      // 30 takers race for 10 units: the condition, not a prior read, decides who gets one.
      const taken = await Promise.all(
        Array.from(
          { length: 30 },
          () =>
            store.transaction((tx) =>
              tx.run("UPDATE counter SET n = n - 1 WHERE id = 1 AND n >= 1")
            ),
        ),
      );
      assert.equal(taken.filter((changed) => changed === 1).length, 10);
      assert.equal(await readCounter(store), 0);
    });
  });

  Deno.test(`transaction() keeps a failing transaction from affecting concurrent ones (${kind.name})`, async () => {
    await withStore(async (store) => {
      const results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          store.transaction(async (tx) => {
            await tx.run("UPDATE counter SET n = n + 1 WHERE id = 1");
            if (i % 2 === 1) throw new Error(`odd ${i}`);
          })),
      );
      assert.equal(results.filter((r) => r.status === "rejected").length, 5);
      assert.equal(await readCounter(store), 5);
    });
  });

  Deno.test(`ping() resolves on an open store (${kind.name})`, async () => {
    await withStore(async (store) => {
      assert.equal(await store.ping(), undefined);
    });
  });

  Deno.test(`probe() commits, and isOutage() is false for a failed statement (${kind.name})`, async () => {
    await withStore(async (store) => {
      await store.probe();
      const failure = await store.transaction((tx) =>
        tx.run("INSERT INTO notes (text) VALUES (?)", null)
      ).catch((error) => error);
      assert.ok(failure instanceof Error);
      assert.equal(store.isOutage(failure), false, describeError(failure));
      assert.equal(store.isOutage(new Error("boom")), false);
    });
  });

  Deno.test(`listen() hears each commit of a transaction that notified its topic, and nothing else (${kind.name})`, async () => {
    await withStore(async (store) => {
      const heard: string[] = [];
      const stopNotes = store.listen("notes", () => heard.push("notes"));
      store.listen("other", () => heard.push("other"));
      await store.transaction(async (tx) => {
        tx.notify("notes");
        tx.notify("notes");
        await tx.run("INSERT INTO notes (text) VALUES ('a')");
      });
      assert.deepEqual(heard, ["notes"], "once per commit, before transaction() resolves");
      await assert.rejects(store.transaction((tx) => {
        tx.notify("other");
        throw new Error("Cannot write the note");
      }));
      await store.transaction(async (tx) => void await tx.run("UPDATE counter SET n = n + 1"));
      await store.read((tx) => Promise.resolve(tx.notify("notes")));
      assert.deepEqual(heard, ["notes"], "not for a rollback, a silent commit or a read");
      stopNotes();
      await store.transaction((tx) => Promise.resolve(tx.notify("notes")));
      assert.deepEqual(heard, ["notes"], "not after the off switch");
    });
  });

  Deno.test(`close() can be called twice (${kind.name})`, async () => {
    await withStore(async (store) => {
      await store.close();
      await store.close().catch(() => {});
      await assert.rejects(store.ping());
    });
  });

  Deno.test(`jsonArrayTable() gives a JSON array's elements as rows, ordered by position (${kind.name})`, async () => {
    await withStore(async (store) => {
      const rows = await store.read((tx) =>
        tx.all<{ value: string }>(
          `SELECT value FROM ${jsonArrayTable(tx.dialect)} ORDER BY position`,
          JSON.stringify(["b", "c", "a"]),
        )
      );
      assert.deepEqual(rows.map((row) => row.value), ["b", "c", "a"]);
    });
  });
}
