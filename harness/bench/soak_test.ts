/**
 * `deno task soak` for a few seconds, against the broker: every sample and figure is there. It
 * checks that the soak works, not that this machine meets the targets.
 */
import assert from "node:assert/strict";
import { parseSoakArgs, runSoak } from "./soak.ts";
import { SERVICES } from "../lib/service_process.ts";
import { INTEGRATION } from "../lib/stack.ts";

Deno.test(
  "runSoak() samples every series and writes the chart, against the broker",
  INTEGRATION,
  async () => {
    const chart = await Deno.makeTempFile({ suffix: ".svg" });
    try {
      const report = await runSoak({
        minutes: 0.3,
        rate: 20,
        intervalSeconds: 5,
        retention: "5s",
        chart,
      });
      assert.ok(report.samples.length >= 3, JSON.stringify(report.samples));
      assert.ok(report.placed > 0 && report.failed === 0);
      for (const sample of report.samples) {
        for (const name of SERVICES) {
          const s = sample.services[name];
          assert.ok(s, `${name} missed the sample at ${sample.t} s`);
          assert.ok(s.rssMb > 0 && s.privateMb > 0 && s.heapMb > 0, name);
          assert.ok(s.storageMb > s.bookkeepingMb && s.bookkeepingMb > 0, name);
          assert.ok(Number.isInteger(s.inboxRows), name);
        }
      }
      assert.ok(report.samples.some((s) => s.p99Ms !== undefined && s.p99Ms > 0));
      for (const name of SERVICES) assert.ok(report.figures.peakPrivateMb[name]! > 0, name);
      assert.deepEqual(report.figures.missedSamples, {
        order: 0,
        inventory: 0,
        notification: 0,
        queues: 0,
      });
      assert.equal(report.figures.verdicts.length, 4);
      assert.ok((await Deno.readTextFile(chart)).includes("</svg>"));
    } finally {
      await Deno.remove(chart).catch(() => {});
    }
  },
);

Deno.test("parseSoakArgs() names the option that is wrong", () => {
  assert.deepEqual(
    parseSoakArgs(["--minutes", "15", "--rate", "200", "--store", "postgres"]).minutes,
    15,
  );
  assert.equal(parseSoakArgs(["--store", "postgres", "--private-postgres"]).privatePostgres, true);
  assert.equal(parseSoakArgs([]).privatePostgres, false);
  assert.throws(() => parseSoakArgs(["--rate", "0"]), /--rate must be a positive number/);
  assert.throws(
    () => parseSoakArgs(["--store", "mysql"]),
    /--store must be one of sqlite, postgres/,
  );
});
