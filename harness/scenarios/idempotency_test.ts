/**
 * `deno task test:idempotency` with its default burst, against the broker.
 */
import assert from "node:assert/strict";
import { assertPass, collect, INTEGRATION } from "./_testing.ts";
import { runIdempotency } from "./idempotency.ts";

Deno.test(
  "runIdempotency() passes with duplicates and a SIGKILL mid-burst, against the broker",
  INTEGRATION,
  async () => {
    const { lines, log } = collect();
    const result = await runIdempotency({ log });
    assertPass(result, lines, ["handled_before_kill", "unacked_redelivered", "orders"]);
    assert.equal(result.figures.orders, 303);
    assert.ok(Number(result.figures.unacked_redelivered) > 0);
  },
);
