/**
 * Unit tests of the scenarios' shared steps that need no broker: arguments, results, tallies.
 */
import assert from "node:assert/strict";
import { formatResult, mapLimit, parseScenarioArgs, runScenario, tally } from "./steps.ts";

Deno.test("parseScenarioArgs() reads --json, --down, --orders and --chart", () => {
  assert.deepEqual(
    parseScenarioArgs(["--json", "--down", "2.5", "--orders=30", "--chart", "x.svg"], {
      accepts: ["down", "orders", "chart"],
    }),
    { json: true, help: false, down: 2.5, orders: 30, chart: "x.svg" },
  );
  assert.deepEqual(parseScenarioArgs([]), { json: false, help: false });
});

Deno.test("parseScenarioArgs() rejects a bad value, naming the option and the value", () => {
  const accepts = ["down", "orders", "chart"] as const;
  assert.throws(
    () => parseScenarioArgs(["--down", "soon"], { accepts }),
    new RangeError(
      'Cannot run the scenario as --down must be a positive number: current value is "soon"',
    ),
  );
  assert.throws(() => parseScenarioArgs(["--orders", "1.5"], { accepts }), /--orders must be/);
  assert.throws(() => parseScenarioArgs(["--orders", "0"], { accepts }), /--orders must be/);
  assert.throws(() => parseScenarioArgs(["--chart", "x.png"], { accepts }), /\.svg/);
});

Deno.test("parseScenarioArgs() rejects an option the scenario does not take", () => {
  assert.throws(() => parseScenarioArgs(["--down", "3"]), /Cannot run the scenario/);
});

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

Deno.test("tally() counts equal values in first-seen order", () => {
  assert.equal(tally(["CONFIRMED", "PENDING", "CONFIRMED"]), "2×CONFIRMED, 1×PENDING");
  assert.equal(tally([1, 1, undefined]), "2×1, 1×undefined");
  assert.equal(tally([]), "nothing");
});

Deno.test("mapLimit() keeps the order and runs at most limit calls at once", async () => {
  let running = 0;
  let most = 0;
  const result = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
    most = Math.max(most, ++running);
    await Promise.resolve();
    running--;
    return n * 2;
  });
  assert.deepEqual(result, [2, 4, 6, 8, 10]);
  assert.equal(most, 2);
});
