/**
 * Unit tests of reading a command line: the scenarios' options and a tool's positive numbers.
 */
import assert from "node:assert/strict";
import { parseScenarioArgs, readCommandLine } from "./command_line.ts";

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

Deno.test("parseScenarioArgs() reads --link as one of the network links, and names a bad one", () => {
  const accepts = ["seconds", "rate", "link"] as const;
  assert.deepEqual(
    parseScenarioArgs(["--link", "database", "--seconds", "5"], { accepts }),
    { json: false, help: false, seconds: 5, link: "database" },
  );
  assert.deepEqual(parseScenarioArgs(["--link=broker"], { accepts }), {
    json: false,
    help: false,
    link: "broker",
  });
  assert.throws(
    () => parseScenarioArgs(["--link", "disk"], { accepts }),
    new RangeError(
      'Cannot run the scenario as --link must be one of broker, database: current value is "disk"',
    ),
  );
  assert.throws(() => parseScenarioArgs(["--link", "broker"]), /Cannot run the scenario/);
});

Deno.test("parseScenarioArgs() rejects an option the scenario does not take", () => {
  assert.throws(() => parseScenarioArgs(["--down", "3"]), /Cannot run the scenario/);
});

Deno.test("readCommandLine() reads positive numbers and integers, and names a bad one with the tool", () => {
  const line = readCommandLine(["--rate", "2.5", "--orders", "3"], {
    tool: "the benchmark",
    options: { rate: { type: "string" }, orders: { type: "string" }, seconds: { type: "string" } },
  });
  assert.equal(line.positive("rate"), 2.5);
  assert.equal(line.positiveInteger("orders"), 3);
  assert.equal(line.positive("seconds", 20), 20);
  assert.throws(
    () => line.positiveInteger("rate"),
    new RangeError(
      'Cannot run the benchmark as --rate must be a positive integer: current value is "2.5"',
    ),
  );
});
