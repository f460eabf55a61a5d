/**
 * What the scenarios' tests share: running a scenario with its steps kept for the assertion
 * message (instead of printed between test names), and the check that it passed with the figures
 * it must report.
 * @module
 */
import assert from "node:assert/strict";
import { formatResult } from "../lib/scenario.ts";
import type { ScenarioResult, StepLog } from "../lib/scenario.ts";

/**
 * Runs a scenario, asserts that it passed and reported each of `figures`, and returns its result
 * with the steps it logged. `run` gets the log to give the scenario.
 */
export async function assertPasses(
  run: (log: StepLog) => Promise<ScenarioResult>,
  figures: readonly string[],
): Promise<ScenarioResult & { steps: string[] }> {
  const lines: string[] = [];
  const result = await run((line) => lines.push(line));
  assert.ok(result.pass, `${lines.join("\n")}\n${formatResult(result)}`);
  for (const figure of figures) {
    assert.ok(figure in result.figures, `figure ${figure} is missing: ${JSON.stringify(result)}`);
  }
  return { ...result, steps: lines };
}
