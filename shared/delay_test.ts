import assert from "node:assert/strict";
import { delay } from "./delay.ts";

Deno.test("delay() resolves after its time, or at once when its signal aborts", async () => {
  const started = performance.now();
  await delay(20, new AbortController().signal);
  assert.ok(performance.now() - started >= 19);

  const stopping = new AbortController();
  const waiting = delay(60_000, stopping.signal);
  stopping.abort();
  await waiting;

  // Already aborted: no timer is left behind for the test's leak check to find.
  await delay(60_000, stopping.signal);
});
