/**
 * Unit tests of the latency percentiles.
 */
import assert from "node:assert/strict";
import { percentiles } from "./percentiles.ts";

Deno.test("percentiles() takes the nearest rank", () => {
  const samples = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual(percentiles(samples), { p50: 50, p95: 95, p99: 99, max: 100, count: 100 });
  assert.throws(() => percentiles([]), RangeError);
});
