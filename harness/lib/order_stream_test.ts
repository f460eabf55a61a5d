import assert from "node:assert/strict";
import { type StreamedOrder, streamOrders } from "./order_stream.ts";
import type { Stack } from "./stack.ts";

/** An order API that answers every POST 202 with a fresh id, on a port of its own. */
async function withOrderApi(run: (stack: Stack) => Promise<void>): Promise<void> {
  let placed = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    await request.body?.cancel();
    return Response.json({ order_id: `o${++placed}` }, { status: 202 });
  });
  try {
    const url = `http://127.0.0.1:${server.addr.port}`;
    await run({ services: { order: { url } } } as unknown as Stack);
  } finally {
    await server.shutdown();
  }
}

Deno.test("streamOrders() sends rate × seconds orders and reports each once it is answered", async () => {
  await withOrderApi(async (stack) => {
    const results: StreamedOrder[] = [];
    await streamOrders(stack, { seconds: 0.5, rate: 40, label: "t" }, (r) => results.push(r));
    assert.equal(results.length, 20);
    assert.equal(new Set(results.map((r) => r.orderId)).size, 20);
    assert.equal(
      results.filter((r) => r.cookies === 1).length,
      7,
      "every third order has a cookie",
    );
  });
});

Deno.test("streamOrders() rejects with the error of a report only once every order is answered", async () => {
  await withOrderApi(async (stack) => {
    let reported = 0;
    await assert.rejects(
      streamOrders(stack, { seconds: 0.25, rate: 40, label: "t" }, () => {
        if (++reported === 1) throw new Error("the first report failed");
      }),
      /the first report failed/,
    );
    assert.equal(reported, 10);
  });
});
