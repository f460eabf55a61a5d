/**
 * What the scenarios' tests share: running a scenario with its steps kept for the assertion
 * message (instead of printed between test names), and the check that it passed with the figures
 * it must report.
 * @module
 */
import assert from "node:assert/strict";
import { formatResult } from "../lib/scenario.ts";
import { HARNESS_SECURE } from "../lib/secure_mode.ts";
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

/**
 * Whether a private cluster's test runs in this pass: its faults are the broker's, not the broker
 * users', so it runs once, in the plain pass, and the secure pass (`HARNESS_SECURE=1`) says so.
 */
export function clusterTestRunsHere(name: string): boolean {
  if (HARNESS_SECURE) {
    console.log(`${name}: runs in the plain pass only, skipped with HARNESS_SECURE=1`);
  }
  return !HARNESS_SECURE;
}
