import assert from "node:assert/strict";
import { queryAdmin } from "../../shared/testing/stores.ts";
import { postgresTest } from "../lib/on_postgres.ts";
import { cpuSeconds, postgresPid, serverCpuSeconds } from "./_stats.ts";

postgresTest(
  "serverCpuSeconds() counts the work of a PostgreSQL connection that has ended",
  async (database) => {
    const server = await postgresPid(database.url);
    assert.ok(server !== undefined, `no local server listens at ${database.url}`);
    assert.equal((await Deno.readTextFile(`/proc/${server}/comm`)).trim(), "postgres");
    const before = (await serverCpuSeconds(server))!;
    // A connection of its own, closed at once: its process is gone before the second read.
    await queryAdmin("SELECT count(*) FROM generate_series(1, 3000000)", database.url);
    const used = (await serverCpuSeconds(server))! - before;
    assert.ok(used >= 0.05, `the server used ${used} s of CPU for three million rows`);
  },
);

Deno.test("cpuSeconds() reads this process's CPU and leaves a process that is gone out", async () => {
  const read = await cpuSeconds({ harness: Deno.pid, gone: 2 ** 22 + 1 });
  assert.deepEqual(Object.keys(read), ["harness"]);
  assert.ok(read.harness > 0);
});
