import assert from "node:assert/strict";
import { nextAttemptAt, type WebhookBackoffOptions } from "./webhook_backoff.ts";

/** The delay `nextAttemptAt()` gives after the `failures`th failure of a delivery just recorded. */
function retryDelayMs(failures: number, options: WebhookBackoffOptions = {}): number {
  const now = Date.parse("2026-01-01T00:00:00Z");
  return nextAttemptAt(failures, { createdAt: now, now }, options)! - now;
}

Deno.test("nextAttemptAt() retries first within a second, then doubles the delay up to 55 s", () => {
  const most = (failures: number) => retryDelayMs(failures, { random: () => 0.999999 });
  const least = (failures: number) => retryDelayMs(failures, { random: () => 0 });
  assert.ok(most(1) <= 1000 && least(1) === 500);
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8, 100, 10_000].map(least),
    [500, 1000, 2000, 4000, 8000, 16_000, 27_500, 27_500, 27_500, 27_500],
  );
  for (let failures = 1; failures < 2000; failures++) {
    assert.ok(most(failures) < 55_000, `failure ${failures}: ${most(failures)} ms`);
    assert.ok(least(failures + 1) >= least(failures), "delays never shrink");
  }
});

Deno.test("nextAttemptAt() spreads deliveries that failed together", () => {
  const delays = new Set(Array.from({ length: 50 }, () => Math.round(retryDelayMs(6))));
  assert.ok(delays.size > 40, `only ${delays.size} distinct delays`);
  assert.ok([...delays].every((ms) => ms >= 16_000 && ms <= 32_000));
});

Deno.test("nextAttemptAt() refuses a failure count below 1", () => {
  assert.throws(() => retryDelayMs(0), /failures must be a positive integer: current value is 0/);
});

Deno.test("nextAttemptAt() retries for 24 hours, then gives up", () => {
  const createdAt = Date.parse("2026-01-01T00:00:00Z");
  const day = 86_400_000;
  // Failing at every attempt, with the longest delays: the attempts over a day.
  let now = createdAt;
  let attempts = 1;
  let longestGapMs = 0;
  while (true) {
    const next = nextAttemptAt(attempts, { createdAt, now }, { random: () => 0.999999 });
    if (next === undefined) break;
    longestGapMs = Math.max(longestGapMs, next - now);
    now = next;
    attempts++;
  }
  assert.ok(now - createdAt >= day, "attempts go on for at least a day");
  assert.ok(now - createdAt < day + 60_000, "and stop within a minute of it");
  assert.ok(longestGapMs < 60_000);
  assert.ok(attempts > 1500, `${attempts} attempts`);
  assert.equal(nextAttemptAt(3, { createdAt, now: createdAt + day }), undefined);
  assert.ok(nextAttemptAt(3, { createdAt, now: createdAt + day - 1 })! > createdAt + day - 1);
});

Deno.test("nextAttemptAt() follows a schedule of the sender's own", () => {
  const options = { initialDelayMs: 20, maxDelayMs: 50, giveUpAfterMs: 300, random: () => 0 };
  assert.deepEqual([1, 2, 3, 4].map((failures) => retryDelayMs(failures, options)), [
    10,
    20,
    25,
    25,
  ]);
  assert.equal(nextAttemptAt(1, { createdAt: 0, now: 300 }, options), undefined);
});
