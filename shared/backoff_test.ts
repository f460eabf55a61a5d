import assert from "node:assert/strict";
import { backoffDelayMs, failureStreak } from "./backoff.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

Deno.test("backoffDelayMs() doubles from the initial delay up to the cap, with equal jitter", () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1000 };
  const ceilings = [1, 2, 3, 4, 5, 40].map((n) => backoffDelayMs(n, { ...options, exact: true }));
  assert.deepEqual(ceilings, [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffDelayMs(3, { ...options, random: () => 0 }), 200);
  assert.equal(backoffDelayMs(3, { ...options, random: () => 0.999999 }) > 399, true);
  for (let i = 0; i < 100; i++) {
    const ms = backoffDelayMs(2, options);
    assert.ok(ms >= 100 && ms < 200, `${ms}`);
  }
});

Deno.test("backoffDelayMs() refuses a failure count that is not a positive integer", () => {
  for (const failures of [0, -1, 1.5, NaN]) {
    assert.throws(
      () => backoffDelayMs(failures, { initialDelayMs: 1, maxDelayMs: 2 }),
      RangeError,
    );
  }
});

Deno.test("failureStreak() warns at the first failure of a streak and says when it ends", () => {
  const { log, lines } = recordingLogger();
  const streak = failureStreak(log, { failing: "cannot reach x", recovered: "reached x again" });
  streak.succeeded();
  assert.equal(streak.failed(new Error("one")), 1);
  assert.equal(streak.failed(new Error("two")), 2);
  assert.equal(streak.failures, 2);
  streak.succeeded();
  streak.failed(new Error("three"));
  assert.deepEqual(lines, ["warn cannot reach x", "info reached x again", "warn cannot reach x"]);
});
