/**
 * `deno task test:idempotency` with its default burst, against the broker.
 */
import assert from "node:assert/strict";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses } from "./_testing.ts";
import { runIdempotency } from "./idempotency.ts";

Deno.test(
  "runIdempotency() passes with duplicates and a SIGKILL mid-burst, against the broker",
  INTEGRATION,
  async () => {
    const result = await assertPasses(
      (log) => runIdempotency({ log }),
      ["handled_before_kill", "unacked_redelivered", "orders"],
    );
    assert.equal(result.figures.orders, 303);
    assert.ok(Number(result.figures.unacked_redelivered) > 0);
  },
);
