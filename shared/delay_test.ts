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

Deno.test("delay() leaves no listener on its signal once the wait is over", async () => {
  const { signal } = new AbortController();
  const listening = new Set<unknown>();
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    listening.add(args[1]);
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listening.delete(args[1]);
    remove(...args);
  };
  for (let round = 0; round < 3; round++) await delay(1, signal);
  assert.equal(listening.size, 0);
});
