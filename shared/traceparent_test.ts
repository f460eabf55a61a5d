import assert from "node:assert/strict";
import { childTraceparent, traceIdOf } from "./traceparent.ts";

const PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Deno.test("traceIdOf() reads the trace id of a valid traceparent", () => {
  assert.equal(traceIdOf(PARENT), "4bf92f3577b34da6a3ce929d0e0e4736");
});

Deno.test("traceIdOf() rejects malformed and all-zero ids", () => {
  for (
    const bad of [
      undefined,
      42,
      "",
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    ]
  ) assert.equal(traceIdOf(bad), undefined, String(bad));
});

Deno.test("childTraceparent() keeps the trace id and flags and makes a new span id", () => {
  const child = childTraceparent(PARENT);
  assert.equal(traceIdOf(child), traceIdOf(PARENT));
  assert.notEqual(child.split("-")[2], PARENT.split("-")[2]);
  assert.equal(child.slice(-2), "01");
  assert.equal(childTraceparent(PARENT.replace(/01$/, "00")).slice(-2), "00");
});

Deno.test("childTraceparent() starts a new, valid trace without a valid parent", () => {
  const a = childTraceparent();
  const b = childTraceparent("garbage");
  assert.ok(traceIdOf(a) && traceIdOf(b));
  assert.notEqual(traceIdOf(a), traceIdOf(b));
});
