import assert from "node:assert/strict";
import {
  currentTraceparent,
  inSpan,
  MessageTrace,
  publishTraced,
  replayTraced,
} from "./tracing.ts";
import { traceIdOf } from "./traceparent.ts";
import type { OutgoingMessage } from "./broker.ts";
import type { Delivery } from "./delivery.ts";

// The traced path needs a process started with OTEL_DENO=true: harness/tests/traces_and_dashboard_test.ts runs
// the services so. These check that without it nothing changes.
const untraced = { ignore: Deno.env.get("OTEL_DENO") === "true" };

const PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

function delivery(headers: Record<string, unknown>): Delivery {
  return {
    body: new Uint8Array(),
    exchange: "campus-food",
    routingKey: "OrderPlaced",
    messageId: "m1",
    persistent: true,
    headers,
    redelivered: false,
  };
}

Deno.test(
  "MessageTrace() without tracing continues the message's trace in a new span id",
  untraced,
  () => {
    const trace = new MessageTrace("order-placed", delivery({ traceparent: PARENT }));
    assert.equal(trace.traceId, traceIdOf(PARENT));
    assert.notEqual(trace.traceparent, PARENT);
    assert.equal(traceIdOf(trace.traceparent), trace.traceId);
    trace.event("retry scheduled");
    trace.fail(new Error("boom"));
    trace.end({ action: "dead-letter", reason: "boom" });
  },
);

Deno.test(
  "MessageTrace() without tracing starts a trace for a message that has none",
  untraced,
  () => {
    const trace = new MessageTrace("order-placed", delivery({}));
    assert.ok(trace.traceId);
    assert.equal(traceIdOf(trace.traceparent), trace.traceId);
  },
);

Deno.test(
  "MessageTrace.commit() without tracing runs the work and passes its failure on",
  untraced,
  async () => {
    const traces = [new MessageTrace("order-placed", delivery({ traceparent: PARENT }))];
    assert.equal(await MessageTrace.commit(traces, () => Promise.resolve(42)), 42);
    await assert.rejects(
      MessageTrace.commit(traces, () => Promise.reject(new Error("rollback"))),
      /rollback/,
    );
  },
);

Deno.test(
  "publishTraced() without tracing publishes the messages as they are",
  untraced,
  async () => {
    const messages: OutgoingMessage[] = [{
      exchange: "campus-food",
      routingKey: "OrderPlaced",
      body: "{}",
      messageId: "m1",
      headers: { traceparent: PARENT },
    }];
    let published: OutgoingMessage[] = [];
    await publishTraced(messages, (sent) => Promise.resolve(void (published = sent)));
    assert.equal(published, messages);
  },
);

Deno.test(
  "replayTraced() without tracing adds no header, so the message keeps its trace",
  untraced,
  async () => {
    let added: Record<string, string> | undefined;
    await replayTraced(delivery({ traceparent: PARENT }), {
      exchange: "campus-food",
      routingKey: "OrderPlaced",
      from: "order-placed.dlq",
      forward: (headers) => Promise.resolve(void (added = headers)),
    });
    assert.deepEqual(added, {});
  },
);

Deno.test(
  "currentTraceparent() without tracing makes a span id in the caller's trace",
  untraced,
  async () => {
    const traceparent = await inSpan(
      "place order",
      () => Promise.resolve(currentTraceparent(PARENT)),
    );
    assert.equal(traceIdOf(traceparent), traceIdOf(PARENT));
    assert.notEqual(traceparent, PARENT);
  },
);
