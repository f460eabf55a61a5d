/**
 * `deno task test:backlog` with short settings, against the broker: how `deno task test` runs it.
 */
import assert from "node:assert/strict";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses } from "./_testing.ts";
import { runBacklog } from "./backlog.ts";

Deno.test(
  "runBacklog() passes with inventory down 3 s for 15 orders, against the broker",
  INTEGRATION,
  async () => {
    const chartFile = await Deno.makeTempFile({ suffix: ".svg" });
    try {
      const result = await assertPasses(
        (log) => runBacklog({ downSeconds: 3, orders: 15, chartFile, log }),
        [
          "peak_depth",
          "drain_s",
          "drain_rate_msg_per_s",
          "all_decided_s",
        ],
      );
      assert.equal(result.figures.peak_depth, 15);
      assert.ok(result.steps.some((line) => line.includes("▲ start")), "the chart is printed");
      assert.match(await Deno.readTextFile(chartFile), /^<svg[^]*<\/svg>\n$/);
    } finally {
      await Deno.remove(chartFile);
    }
  },
);
