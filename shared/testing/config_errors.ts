/**
 * An assertion for configuration tests: parsing stops with one line that names the variable and
 * shows its value.
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError } from "../config.ts";

/**
 * Asserts that `parse(env)` throws a one-line {@linkcode ConfigError} saying that `who` cannot
 * start as `variable` must be something, and showing `value`.
 */
export function assertConfigError(
  parse: (env: Record<string, string>) => unknown,
  env: Record<string, string>,
  expected: { who: string; variable: string; value: string },
): void {
  const { who, variable, value } = expected;
  assert.throws(
    () => parse(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
      assert.equal(error.name, "ConfigError");
      assert.ok(
        error.message.startsWith(`Cannot start ${who} as ${variable} must be `),
        error.message,
      );
      assert.ok(error.message.includes(JSON.stringify(value)), error.message);
      assert.ok(!error.message.includes("\n"), "the message is one line");
      return true;
    },
  );
}
