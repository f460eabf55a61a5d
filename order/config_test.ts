import assert from "node:assert/strict";
import { configTests } from "../shared/testing/config_errors.ts";
import { ORDER_VARIABLES } from "./config.ts";

const { parse, assertConfigError } = configTests("order", { variables: ORDER_VARIABLES });

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
