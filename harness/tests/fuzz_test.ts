/**
 * Guarantee 10 against the real broker: generated bad input on every route of the three services
 * gets a 4xx JSON error, never a 5xx; nothing is stored or published for a refusal; no metric label
 * takes a client's names; memory stays flat. A bounded run here (`FUZZ_RUNS`, default 2000);
 * `deno task fuzz` runs longer.
 */
import assert from "node:assert/strict";
import { stackTest } from "../lib/stack.ts";
import { fuzzStack } from "../lib/fuzz_run.ts";

/**
 * Requests after the warm-up. The test also waits for the stack's start and for a few stalled bodies
 * that wait out the 2 s body timeout.
 */
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 2000);
const SEED = Deno.env.get("FUZZ_SEED");

stackTest(
  "fuzzStack() finds no bad input that gets a 5xx, a non-JSON 4xx, a stored order or an event, against the broker",
  // A short body timeout, so that a body that stalls is cut off within the run.
  { env: { HTTP_BODY_TIMEOUT: "2s" } },
  async (stack) => {
    const result = await fuzzStack(stack, {
      runs: RUNS,
      seed: SEED ? Number(SEED) : undefined,
      // A failure is shrunk for 15 s at most: the test stays well under a minute either way.
      seconds: 40,
      shrinkMs: 15_000,
    });
    const perService = Object.entries(result.tried).map(([name, n]) => `${name} ${n}`).join(", ");
    console.log(
      `fuzz: ${result.total} requests (${perService}), ${result.accepted} orders accepted, ` +
        `${Math.round(result.total / (result.elapsedMs / 1000))}/s, seed ${result.seed}`,
    );
    assert.equal(result.failure, undefined, result.failure ?? "");
    assert.deepEqual(result.violations, []);
  },
);
