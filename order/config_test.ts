import assert from "node:assert/strict";
import { type Config, parseConfig, type ValuesOf } from "../shared/config.ts";
import { assertConfigError as assertRefused } from "../shared/testing/config_errors.ts";
import { ORDER_VARIABLES } from "./config.ts";

/** The configuration of order: what every service reads, and its own. */
function parse(
  env: Record<string, string | undefined>,
): Config & ValuesOf<typeof ORDER_VARIABLES> {
  return parseConfig(env, "order", { variables: ORDER_VARIABLES });
}

function assertConfigError(env: Record<string, string>, variable: string, value: string): void {
  assertRefused(parse, env, { who: "order", variable, value });
}

Deno.test("parseConfig() reads ORDER_DECISION_TIMEOUT, 120 s by default", () => {
  assert.equal(parse({}).orderDecisionTimeoutMs, 120_000);
  assert.equal(parse({ ORDER_DECISION_TIMEOUT: "3s" }).orderDecisionTimeoutMs, 3000);
  assert.equal(
    parse({ ORDER_DECISION_TIMEOUT: "2m" }).orderDecisionTimeoutMs,
    120_000,
  );
  assertConfigError({ ORDER_DECISION_TIMEOUT: "0s" }, "ORDER_DECISION_TIMEOUT", "0s");
  assertConfigError({ ORDER_DECISION_TIMEOUT: "soon" }, "ORDER_DECISION_TIMEOUT", "soon");
});

Deno.test("parseConfig() reads MAX_UNITS_PER_STUDENT, no cap by default", () => {
  assert.equal(parse({}).maxUnitsPerStudent, undefined);
  assert.equal(parse({ MAX_UNITS_PER_STUDENT: "20" }).maxUnitsPerStudent, 20);
  assertConfigError({ MAX_UNITS_PER_STUDENT: "0" }, "MAX_UNITS_PER_STUDENT", "0");
  assertConfigError({ MAX_UNITS_PER_STUDENT: "-5" }, "MAX_UNITS_PER_STUDENT", "-5");
  assertConfigError({ MAX_UNITS_PER_STUDENT: "2.5" }, "MAX_UNITS_PER_STUDENT", "2.5");
});

Deno.test("parseConfig() reads IDEMPOTENCY_KEY_RETENTION, 24 h by default", () => {
  assert.equal(parse({}).idempotencyKeyRetentionMs, 24 * 3_600_000);
  assert.equal(parse({ IDEMPOTENCY_KEY_RETENTION: "1500ms" }).idempotencyKeyRetentionMs, 1500);
  assertConfigError({ IDEMPOTENCY_KEY_RETENTION: "24" }, "IDEMPOTENCY_KEY_RETENTION", "24");
});
