/**
 * Unit tests of the scenario runner: a result from what a scenario reported, and its last line.
 */
import assert from "node:assert/strict";
import { formatResult, runScenario } from "./scenario.ts";

Deno.test("runScenario() passes when nothing failed, and keeps the figures", async () => {
  const result = await runScenario("x", { log: () => {} }, async (report) => {
    report.figure("n", 3);
    report.expect(true, "a", "b");
    report.summary("all good");
    await Promise.resolve();
  });
  assert.equal(result.pass, true);
  assert.equal(result.figures.n, 3);
  assert.equal(formatResult(result), "PASS x: all good");
});

Deno.test("runScenario() fails with every unmet expectation and a thrown error", async () => {
  const result = await runScenario("x", { log: () => {} }, async (report) => {
    report.expect(false, "1 notification", "2");
    await Promise.resolve();
    throw new Error("Timed out");
  });
  assert.equal(result.pass, false);
  assert.equal(formatResult(result), "FAIL x: expected 1 notification, saw 2; Timed out");
});
