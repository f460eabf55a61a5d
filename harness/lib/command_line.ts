/**
 * Reading a harness tool's command line: `node:util`'s `parseArgs`, strict, with every failure a
 * `RangeError` that names the tool, and positive numbers checked the same way everywhere.
 * @module
 */
import { parseArgs } from "node:util";
import { describeError } from "../../shared/log.ts";

/** The options a tool takes: each a string, or a boolean flag. */
export type OptionTypes = Record<string, { type: "string" | "boolean"; short?: string }>;

/** A parsed command line; see {@linkcode readCommandLine}. */
export interface CommandLine {
  values: Record<string, string | boolean | undefined>;
  /**
   * The option `name` as a positive number, or `fallback` when it is not given.
   * @throws {RangeError} naming the option when it is not a positive number
   */
  positive(name: string, fallback?: number): number | undefined;
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
  return {
    values,
    positive(name, fallback) {
      const text = values[name];
      if (typeof text !== "string") return fallback;
      const value = Number(text);
      if (text.trim() === "" || !(value > 0)) {
        throw new RangeError(
          `Cannot run ${tool} as --${name} must be a positive number: current value is "${text}"`,
        );
      }
      return value;
    },
  };
}
