import assert from "node:assert/strict";
import { topicListeners } from "./store_topics.ts";

/** Lets the microtasks queued so far run. */
function microtasksRun(): Promise<void> {
  return new Promise((resolve) => queueMicrotask(resolve));
}

Deno.test("topicListeners() announce() calls each listener of an announced topic once, after the call", async () => {
  const topics = topicListeners();
  const heard: string[] = [];
  topics.listen("orders", () => heard.push("orders 1"));
  topics.listen("orders", () => heard.push("orders 2"));
  topics.listen("stock", () => heard.push("stock"));
  topics.announce(new Set(["orders", "nobody listens"]));
  assert.deepEqual(heard, [], "queued, not called within announce()");
  await microtasksRun();
  assert.deepEqual(heard, ["orders 1", "orders 2"]);
});

Deno.test("topicListeners() listen() returns an off switch for that listener only", async () => {
  const topics = topicListeners();
  const heard: string[] = [];
  const off = topics.listen("orders", () => heard.push("off"));
  topics.listen("orders", () => heard.push("on"));
  off();
  topics.announce(new Set(["orders"]));
  await microtasksRun();
  assert.deepEqual(heard, ["on"]);
});

Deno.test("topicListeners() announce() does not throw for a listener that throws, and calls the others", async () => {
  const topics = topicListeners();
  const heard: string[] = [];
  const thrown: unknown[] = [];
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    thrown.push(event.error);
  };
  globalThis.addEventListener("error", onError);
  try {
    topics.listen("orders", () => {
      throw new Error("Cannot wake the relay");
    });
    topics.listen("orders", () => heard.push("after"));
    topics.announce(new Set(["orders"]));
    await microtasksRun();
  } finally {
    globalThis.removeEventListener("error", onError);
  }
  assert.deepEqual(heard, ["after"]);
  assert.equal(thrown.length, 1);
});
