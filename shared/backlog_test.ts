import assert from "node:assert/strict";
import { readBacklog, watchBacklog } from "./backlog.ts";
import { renderMetrics } from "./metrics.ts";
import { storeKinds } from "./testing/stores.ts";

const WAITING = {
  name: "waiting",
  sql:
    `CREATE TABLE waiting (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, done INTEGER NOT NULL)`,
};

for (const kind of await storeKinds()) {
  Deno.test(`readBacklog() counts the rows that wait and finds the oldest (${kind.name})`, async () => {
    await kind.with("backlog", [WAITING], async (store) => {
      assert.deepEqual(await store.read((tx) => readBacklog(tx, "waiting WHERE done = 0")), {
        count: 0,
        oldestCreatedAt: null,
      });
      await store.transaction(async (tx) => {
        await tx.run("INSERT INTO waiting VALUES (1, '2026-01-01T00:00:02.000Z', 0)");
        await tx.run("INSERT INTO waiting VALUES (2, '2026-01-01T00:00:01.000Z', 1)");
        await tx.run("INSERT INTO waiting VALUES (3, '2026-01-01T00:00:03.000Z', 0)");
      });
      assert.deepEqual(await store.read((tx) => readBacklog(tx, "waiting WHERE done = 0")), {
        count: 2,
        oldestCreatedAt: "2026-01-01T00:00:02.000Z",
      });
    });
  });
}

Deno.test("watchBacklog() reports the count and the oldest row's age at each scrape", async () => {
  const [sqlite] = await storeKinds();
  await sqlite.with("backlog", [WAITING], async (store) => {
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    await store.transaction((tx) =>
      tx.run("INSERT INTO waiting VALUES (1, ?, 0)", minuteAgo).then(() => {})
    );
    watchBacklog(store, {
      count: { name: "campus_food_test_backlog_waiting", help: "Rows waiting" },
      oldestAge: { name: "campus_food_test_backlog_oldest_seconds", help: "Oldest row's age" },
      read: (tx) => readBacklog(tx, "waiting WHERE done = 0"),
    });
    const lines = (await renderMetrics()).split("\n");
    assert.ok(lines.includes("campus_food_test_backlog_waiting 1"), lines.join("\n"));
    const age = Number(
      lines.find((line) => line.startsWith("campus_food_test_backlog_oldest_seconds "))?.split(
        " ",
      )[1],
    );
    assert.ok(age >= 60 && age < 120, `age ${age}`);
  });
});
