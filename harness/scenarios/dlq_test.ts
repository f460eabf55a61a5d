/**
 * `deno task test:dlq`, against the broker.
 */
import assert from "node:assert/strict";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses } from "./_testing.ts";
import { runDlq } from "./dlq.ts";

Deno.test(
  "runDlq() passes with ten kinds of poison between valid orders, against the broker",
  INTEGRATION,
  async () => {
    const result = await assertPasses(
      (log) => runDlq({ log }),
      ["poison_in_dlq", "valid_confirmed"],
    );
    assert.equal(result.figures.poison_in_dlq, 10);
    assert.equal(result.figures.valid_confirmed, 11);
  },
);
