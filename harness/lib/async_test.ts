/**
 * Unit tests of waiting: polling with a deadline, a promise with a deadline, a pool of calls.
 */
import assert from "node:assert/strict";
import { mapLimit, waitFor, within } from "./async.ts";

Deno.test("mapLimit() keeps the order and runs at most limit calls at once", async () => {
  let running = 0;
  let most = 0;
  const result = await mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
    most = Math.max(most, ++running);
    await Promise.resolve();
    running--;
    return n * 2;
  });
  assert.deepEqual(result, [2, 4, 6, 8, 10]);
  assert.equal(most, 2);
});

Deno.test("waitFor() returns the first value that is neither undefined nor false", async () => {
  let polls = 0;
  const value = await waitFor("the third poll", () => ++polls >= 3 && polls, { intervalMs: 1 });
  assert.equal(value, 3);
});

Deno.test("waitFor() fails after its deadline naming what it waited for and what it last saw", async () => {
  await assert.rejects(
    waitFor("a miracle", () => false, { timeoutMs: 20, intervalMs: 5 }),
    /^Error: Timed out after 20 ms waiting for a miracle: last saw false$/,
  );
});

Deno.test("within() rejects naming what it waited for once the deadline passed", async () => {
  assert.equal(await within(Promise.resolve(1), 1000, "one"), 1);
  await assert.rejects(
    within(new Promise(() => {}), 10, "the broker to confirm x"),
    /Timed out after 10 ms waiting for the broker to confirm x/,
  );
});
