/**
 * The scenario runner: a scenario reports its steps, figures and expectations as it goes, and
 * ends in one line, `PASS name: what passed` or `FAIL name: why` (or one JSON object with
 * `--json`), with exit code 0 or 1.
 * @module
 */
import { describeError } from "../../shared/log.ts";
import { parseScenarioArgs, type ScenarioArgs, type ScenarioArgsOptions } from "./command_line.ts";
import { round } from "./format.ts";
import { isInterrupted } from "./interrupt.ts";

/** What a scenario found: printed as its last line, or as one JSON object with `--json`. */
export interface ScenarioResult {
  name: string;
  pass: boolean;
  /** Why it failed: what was expected, what was seen. */
  reason?: string;
  /** One line on what passed. */
  summary?: string;
  figures: Record<string, number | string>;
}

/** Where a scenario writes its steps; `--json` silences them. */
export type StepLog = (line: string) => void;

/** Options every scenario's `run…()` takes. */
export interface ScenarioOptions {
  /** Receives each step and figure as a line. @default {console.log} */
  log?: StepLog;
}

/** Collects a scenario's figures and failed expectations while it runs. */
export interface Report {
  /** Prints one step, with the seconds since the scenario began. */
  step(text: string): void;
  /** Records a figure, printed with the others at the end. */
  figure(name: string, value: number | string): void;
  /** Records a failure unless `ok`: `expected …, saw …`. */
  expect(ok: boolean, expected: string, seen: string): void;
  /** The one line a pass prints after PASS. */
  summary(text: string): void;
}

/**
 * Runs `body` as the scenario `name` and turns what it reported into a result. Never rejects: an
 * error thrown by `body` (a deadline passed, a service died) is a FAIL with that error as reason.
 */
export async function runScenario(
  name: string,
  options: ScenarioOptions,
  body: (report: Report) => Promise<void>,
): Promise<ScenarioResult> {
  const { log = console.log } = options;
  const began = performance.now();
  const figures: Record<string, number | string> = {};
  const failures: string[] = [];
  let summary: string | undefined;
  const report: Report = {
    step(text) {
      log(`[${((performance.now() - began) / 1000).toFixed(1).padStart(5)}s] ${text}`);
    },
    figure(figureName, value) {
      figures[figureName] = value;
    },
    expect(ok, expected, seen) {
      if (!ok) failures.push(`expected ${expected}, saw ${seen}`);
    },
    summary(text) {
      summary = text;
    },
  };
  try {
    await body(report);
  } catch (error) {
    failures.push(describeError(error));
  }
  figures.duration_s = round((performance.now() - began) / 1000, 1);
  return failures.length === 0
    ? { name, pass: true, summary, figures }
    : { name, pass: false, reason: failures.join("; "), figures };
}

/** The last line of a scenario's output: `PASS name: …` or `FAIL name: …`. */
export function formatResult(result: ScenarioResult): string {
  return result.pass
    ? `PASS ${result.name}${result.summary ? `: ${result.summary}` : ""}`
    : `FAIL ${result.name}: ${result.reason ?? "no reason given"}`;
}

/** Options for {@linkcode runFromCommandLine}. */
export interface CommandOptions extends ScenarioArgsOptions {
  /** Printed for `--help`. */
  usage: string;
}

/**
 * The `import.meta.main` block of a scenario: parses `Deno.args`, runs, prints the steps and the
 * PASS/FAIL line (or one JSON object with `--json`), and exits 0 on PASS, else 1.
 */
export async function runFromCommandLine(
  name: string,
  run: (args: ScenarioArgs, log: StepLog) => Promise<ScenarioResult>,
  options: CommandOptions,
): Promise<never> {
  let args: ScenarioArgs;
  try {
    args = parseScenarioArgs(Deno.args, options);
  } catch (error) {
    const result = { name, pass: false, reason: describeError(error), figures: {} };
    const json = Deno.args.includes("--json");
    console.log(json ? JSON.stringify(result) : `${formatResult(result)}\n\n${options.usage}`);
    Deno.exit(1);
  }
  if (args.help) {
    console.log(options.usage);
    Deno.exit(0);
  }
  let result: ScenarioResult;
  try {
    result = await run(args, args.json ? () => {} : console.log);
  } catch (error) {
    result = { name, pass: false, reason: describeError(error), figures: {} };
  }
  // The signal handler is closing the stack and exits 130 when done.
  if (isInterrupted()) await new Promise(() => {});
  if (args.json) console.log(JSON.stringify(result));
  else console.log(`${formatFigures(result.figures)}\n${formatResult(result)}`);
  Deno.exit(result.pass ? 0 : 1);
}

function formatFigures(figures: Record<string, number | string>): string {
  const width = Math.max(...Object.keys(figures).map((key) => key.length));
  return ["figures:", ...Object.entries(figures).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)]
    .join("\n");
}
