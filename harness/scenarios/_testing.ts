/**
 * What the scenarios' tests share: a scenario's steps kept for the assertion message instead of
 * printed between test names, and the check that it passed with the figures it must report.
 * @module
 */
import assert from "node:assert/strict";
import { formatResult, type ScenarioResult } from "../lib/scenario.ts";

/** A scenario runs against the broker with services as child processes, which outlive a test's ops. */
export const INTEGRATION = { sanitizeOps: false, sanitizeResources: false };

/** Keeps the steps for the assertion message instead of printing them between test names. */
export function collect(): { lines: string[]; log: (line: string) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

/** Asserts that `result` passed, with the steps in the message, and that it has `figures`. */
export function assertPass(result: ScenarioResult, lines: string[], figures: string[]): void {
  assert.ok(result.pass, `${lines.join("\n")}\n${formatResult(result)}`);
  for (const figure of figures) {
    assert.ok(figure in result.figures, `figure ${figure} is missing: ${JSON.stringify(result)}`);
  }
}
