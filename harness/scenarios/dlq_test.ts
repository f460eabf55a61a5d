/**
 * `deno task test:dlq`, against the broker.
 */
import assert from "node:assert/strict";
import { assertPass, collect, INTEGRATION } from "./_testing.ts";
import { runDlq } from "./dlq.ts";

Deno.test(
  "runDlq() passes with ten kinds of poison between valid orders, against the broker",
  INTEGRATION,
  async () => {
    const { lines, log } = collect();
    const result = await runDlq({ log });
    assertPass(result, lines, ["poison_in_dlq", "valid_confirmed"]);
    assert.equal(result.figures.poison_in_dlq, 10);
    assert.equal(result.figures.valid_confirmed, 11);
  },
);
