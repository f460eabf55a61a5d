/**
 * Configuration tests: a service's parser, and an assertion that a bad value stops it with one
 * line that names the variable and shows its value.
 * @module
 */
import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  parseConfig,
  type ServiceVariables,
  type ValuesOf,
  type Variables,
} from "../config.ts";

/** What {@linkcode configTests} gives a service's configuration tests. */
export interface ConfigTests<V extends Variables> {
  /** Parses `env` as the service does at start. */
  parse(env: Record<string, string | undefined>): Config & ValuesOf<V>;
  /** Asserts that `env` stops the service naming `variable` and showing `value`. */
  assertConfigError(env: Record<string, string>, variable: string, value: string): void;
}

/** The parser of the service `who`, which reads `own` besides the common variables. */
export function configTests<V extends Variables = Record<never, never>>(
  who: string,
  own?: ServiceVariables<V>,
): ConfigTests<V> {
  const parse = (env: Record<string, string | undefined>) => parseConfig(env, who, own);
  return {
    parse,
    assertConfigError(env, variable, value) {
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
    },
  };
}
