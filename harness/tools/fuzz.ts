/**
 * `deno task fuzz`: the HTTP fuzzer of `harness/tests/fuzz_test.ts`, for longer, on a stack of its
 * own. Prints how many requests it tried per service, and the first counterexample fast-check
 * found, shrunk, with the `--seed` and `--path` that replay it; exits 1 when it found one.
 *
 *   deno task fuzz --runs 100000
 *   deno task fuzz --seconds 600
 *   deno task fuzz --seed 1179449797 --path "359:1:0:0"   # replays one counterexample
 *   HARNESS_SECURE=1 deno task fuzz --seconds 60          # with bearer tokens required
 * @module
 */
import { readCommandLine, runToolFromCommandLine, toolOptions } from "../lib/command_line.ts";
import { withStack } from "../lib/stack.ts";
import { type FuzzResult, fuzzStack } from "../lib/fuzz_run.ts";

const USAGE = `Usage: deno task fuzz [--runs N] [--seconds S] [--seed N [--path P]] [--json]

  --runs N      requests to try after a warm-up of 100 (default 5000; with --seconds, no limit)
  --seconds S   stop after S seconds, shrinking included
  --seed N      fast-check's seed, printed by every run
  --path P      with --seed: replay the one counterexample a failure printed
  --json        print the result as one JSON object

Set HARNESS_SECURE=1 to fuzz services that want bearer tokens.`;

/** The fuzzer's command line. */
export interface FuzzArgs {
  runs?: number;
  seconds?: number;
  seed?: number;
  path?: string;
  json: boolean;
  help: boolean;
}

/**
 * Parses `args` (usually `Deno.args`).
 * @throws {RangeError} naming the option and what it must be
 */
export function parseFuzzArgs(args: string[]): FuzzArgs {
  const { values, positive, positiveInteger } = readCommandLine(args, {
    tool: "the fuzzer",
    options: toolOptions(["runs", "seconds", "seed", "path"]),
  });
  const seconds = positive("seconds");
  const result: FuzzArgs = {
    runs: positiveInteger("runs", seconds === undefined ? 5000 : undefined),
    seconds,
    json: values.json === true,
    help: values.help === true,
  };
  if (typeof values.seed === "string") {
    const seed = Number(values.seed);
    if (!Number.isInteger(seed)) {
      throw new RangeError(
        `Cannot run the fuzzer as --seed must be an integer: current value is "${values.seed}"`,
      );
    }
    result.seed = seed;
  }
  if (typeof values.path === "string") {
    if (result.seed === undefined) {
      throw new RangeError("Cannot run the fuzzer as --path needs the --seed it was printed with");
    }
    result.path = values.path;
  }
  return result;
}

/** The result in a few lines: counts, rate, memory, and what broke. */
export function formatFuzzResult(result: FuzzResult): string {
  const perService = Object.entries(result.tried).map(([name, n]) => `${name} ${n}`).join(", ");
  const rate = Math.round(result.total / (result.elapsedMs / 1000));
  const memory = Object.entries(result.memory).map(([name, m]) =>
    `${name} ${m?.afterWarmupMb} → ${m?.endMb} MB`
  ).join(", ");
  return [
    `Tried ${result.total} requests (${perService}) in ${
      Math.round(result.elapsedMs / 1000)
    } s, ${rate}/s; ${result.accepted} orders accepted; seed ${result.seed}`,
    `Resident memory after the warm-up → at the end: ${memory}`,
    ...result.slowest
      ? [`Slowest answer: ${Math.round(result.slowest.ms)} ms for ${result.slowest.request}`]
      : [],
    result.failure ?? "No request broke the contract.",
    ...result.violations.length > 0
      ? ["After the run:", ...result.violations.map((v) => `  ${v}`)]
      : ["After the run: nothing stored or published for a refusal; metrics and memory bounded."],
  ].join("\n");
}

if (import.meta.main) {
  await runToolFromCommandLine("the fuzzer", {
    usage: USAGE,
    parse: parseFuzzArgs,
    run: (args, log) =>
      withStack({ env: { HTTP_BODY_TIMEOUT: "2s" } }, (stack) => {
        log(`Fuzzing ${Object.keys(stack.services).join(", ")}${stack.secure ? " (secure)" : ""}`);
        return fuzzStack(stack, { ...args, runs: args.runs ?? 1e9, log });
      }),
    format: formatFuzzResult,
    failed: (result) => !!result.failure || result.violations.length > 0,
  });
}
