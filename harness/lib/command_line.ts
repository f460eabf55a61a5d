/**
 * Reading the command line of a scenario or a tool: `node:util`'s `parseArgs`, strict, with every
 * failure a `RangeError` that names the tool, and positive numbers checked the same way everywhere.
 * @module
 */
import { parseArgs } from "node:util";
import { describeError } from "../../shared/log.ts";

/** The options a tool takes: each a string, or a boolean flag. */
export type OptionTypes = Record<string, { type: "string" | "boolean"; short?: string }>;

/**
 * The options of a tool that reports: `strings` take a value, `flags` take none, and every such
 * tool also takes `--json` and `--help` (`-h`).
 */
export function toolOptions(
  strings: readonly string[],
  flags: readonly string[] = [],
): OptionTypes {
  const types: OptionTypes = {};
  for (const name of strings) types[name] = { type: "string" };
  for (const name of [...flags, "json"]) types[name] = { type: "boolean" };
  types.help = { type: "boolean", short: "h" };
  return types;
}

/** A parsed command line; see {@linkcode readCommandLine}. */
export interface CommandLine {
  values: Record<string, string | boolean | undefined>;
  /**
   * The option `name` as a positive number, or `fallback` when it is not given.
   * @throws {RangeError} naming the option when it is not a positive number
   */
  positive(name: string, fallback?: number): number | undefined;
  /**
   * The option `name` as a positive integer, or `fallback` when it is not given.
   * @throws {RangeError} naming the option when it is not a positive integer
   */
  positiveInteger(name: string, fallback?: number): number | undefined;
  /**
   * The option `name` when it is one of `allowed`, or undefined when it is not given.
   * @throws {RangeError} naming the option and what it may be
   */
  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined;
}

/**
 * Parses `args` for the tool called `tool` in messages ("the soak", "the benchmark").
 * @throws {RangeError} "Cannot run <tool> as its arguments are invalid: …"
 */
export function readCommandLine(
  args: string[],
  options: { tool: string; options: OptionTypes },
): CommandLine {
  const { tool } = options;
  let values: CommandLine["values"];
  try {
    values = parseArgs({ args, strict: true, options: options.options }).values;
  } catch (error) {
    throw new RangeError(
      `Cannot run ${tool} as its arguments are invalid: ${describeError(error)}`,
    );
  }
  function read(name: string, fallback: number | undefined, integer: boolean): number | undefined {
    const text = values[name];
    if (typeof text !== "string") return fallback;
    const value = Number(text);
    if (text.trim() === "" || !(value > 0) || (integer && !Number.isInteger(value))) {
      throw new RangeError(
        `Cannot run ${tool} as --${name} must be a positive ${
          integer ? "integer" : "number"
        }: current value is "${text}"`,
      );
    }
    return value;
  }
  return {
    values,
    positive: (name, fallback) => read(name, fallback, false),
    positiveInteger: (name, fallback) => read(name, fallback, true),
    oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined {
      const text = values[name];
      if (typeof text !== "string") return undefined;
      if (!allowed.includes(text as T)) {
        throw new RangeError(
          `Cannot run ${tool} as --${name} must be one of ${
            allowed.join(", ")
          }: current value is "${text}"`,
        );
      }
      return text as T;
    },
  };
}

/** What every tool's command line says beside its own options. */
export interface ToolArgs {
  json: boolean;
  help: boolean;
}

/** Options for {@linkcode runToolFromCommandLine}. */
export interface ToolOptions<A extends ToolArgs, R> {
  /** Printed for `--help`, and after a bad argument. */
  usage: string;
  /** Reads the command line; throws a `RangeError` for a bad argument. */
  parse(args: string[]): A;
  /** Runs the tool; `log` prints a step (to stderr with `--json`, so that stdout is the JSON). */
  run(args: A, log: (line: string) => void): Promise<R>;
  /** The report as text; with `--json` it is printed as one JSON object instead. */
  format(report: R): string;
  /** True when the report says the tool found something wrong: it then exits 1. @default {never} */
  failed?(report: R): boolean;
}

/**
 * The `import.meta.main` block of a tool that reports (the benchmark, the soak, the fuzzer), called
 * `tool` in messages: exits 2 after a bad argument, 0 once the report is printed (1 when it says
 * `failed`), and 1 after one line saying why it could not finish.
 */
export async function runToolFromCommandLine<A extends ToolArgs, R>(
  tool: string,
  options: ToolOptions<A, R>,
): Promise<never> {
  let args: A;
  try {
    args = options.parse(Deno.args);
  } catch (error) {
    console.error(`${describeError(error)}\n\n${options.usage}`);
    Deno.exit(2);
  }
  if (args.help) {
    console.log(options.usage);
    Deno.exit(0);
  }
  try {
    const report = await options.run(args, args.json ? console.error : console.log);
    console.log(args.json ? JSON.stringify(report) : `\n${options.format(report)}`);
    Deno.exit(options.failed?.(report) ? 1 : 0);
  } catch (error) {
    console.error(`Cannot finish ${tool}: ${describeError(error)}`);
    Deno.exit(1);
  }
}

/** The links whose settings `test:network` can run alone, as `--link` names them. */
export const NETWORK_LINKS = ["broker", "database"] as const;

/** A link between the services and what they depend on: one of {@linkcode NETWORK_LINKS}. */
export type NetworkLink = typeof NETWORK_LINKS[number];

/** The command line of a scenario. */
export interface ScenarioArgs {
  json: boolean;
  help: boolean;
  /** `--down`, in seconds. */
  down?: number;
  /** `--orders`. */
  orders?: number;
  /** `--chart`, an SVG file to write. */
  chart?: string;
  /** `--seconds`: how long a scenario runs. */
  seconds?: number;
  /** `--rate`: orders per second. */
  rate?: number;
  /** `--broker-outage`: cut the services off the broker for a while. */
  brokerOutage?: boolean;
  /** `--db-outage`: cut the services off their database for a while. */
  databaseOutage?: boolean;
  /** `--link`: the one link whose settings run, after the baseline. */
  link?: NetworkLink;
}

/** An option a scenario may take besides `--json` and `--help`. */
export type ScenarioOption =
  | "down"
  | "orders"
  | "chart"
  | "seconds"
  | "rate"
  | "broker-outage"
  | "db-outage"
  | "link";

/** Options for {@linkcode parseScenarioArgs}. */
export interface ScenarioArgsOptions {
  /** The options this scenario takes besides `--json` and `--help`. @default {[]} */
  accepts?: readonly ScenarioOption[];
}

/** The options that take no value. */
const FLAGS: ReadonlySet<ScenarioOption> = new Set(["broker-outage", "db-outage"]);

/**
 * Parses a scenario's `args` (usually `Deno.args`).
 * @throws {RangeError} naming the option and what it must be
 */
export function parseScenarioArgs(
  args: string[],
  options: ScenarioArgsOptions = {},
): ScenarioArgs {
  const { accepts = [] } = options;
  const { values, positive, positiveInteger, oneOf } = readCommandLine(args, {
    tool: "the scenario",
    options: toolOptions(
      accepts.filter((name) => !FLAGS.has(name)),
      accepts.filter((name) => FLAGS.has(name)),
    ),
  });
  const result: ScenarioArgs = { json: values.json === true, help: values.help === true };
  const down = positive("down");
  if (down !== undefined) result.down = down;
  const orders = positiveInteger("orders");
  if (orders !== undefined) result.orders = orders;
  const seconds = positive("seconds");
  if (seconds !== undefined) result.seconds = seconds;
  const rate = positive("rate");
  if (rate !== undefined) result.rate = rate;
  if (values["broker-outage"] === true) result.brokerOutage = true;
  if (values["db-outage"] === true) result.databaseOutage = true;
  const link = oneOf("link", NETWORK_LINKS);
  if (link !== undefined) result.link = link;
  if (typeof values.chart === "string") {
    if (!values.chart.endsWith(".svg")) {
      throw new RangeError(
        `Cannot run the scenario as --chart must name an .svg file: current value is "${values.chart}"`,
      );
    }
    result.chart = values.chart;
  }
  return result;
}
