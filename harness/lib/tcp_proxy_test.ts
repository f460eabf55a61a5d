import assert from "node:assert/strict";
import { startTcpProxy, type TcpProxy } from "./tcp_proxy.ts";

/** An echo server on a free port: what comes in goes back out. */
function startEcho(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      conn.readable.pipeTo(conn.writable).catch(() => {});
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, close: () => listener.close() };
}

/** Runs `fn` with a connection through a proxy in front of an echo server. */
async function throughProxy(
  fn: (conn: Deno.Conn, proxy: TcpProxy) => Promise<void>,
): Promise<void> {
  const echo = startEcho();
  const proxy = startTcpProxy({ hostname: "127.0.0.1", port: echo.port });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxy.port });
  try {
    await fn(conn, proxy);
  } finally {
    conn.close();
    proxy.close();
    echo.close();
  }
}

/** Reads until `length` bytes came back, and returns them as text. */
async function readText(conn: Deno.Conn, length: number): Promise<string> {
  const bytes = new Uint8Array(length);
  for (let got = 0; got < length;) {
    const n = await conn.read(bytes.subarray(got));
    if (n === null) throw new Error(`connection closed after ${got} of ${length} bytes`);
    got += n;
  }
  return new TextDecoder().decode(bytes);
}

const encoder = new TextEncoder();

Deno.test("delay() holds each byte for the latency each way, and undefined ends it", async () => {
  await throughProxy(async (conn, proxy) => {
    proxy.delay({ ms: 100 });
    let began = performance.now();
    await conn.write(encoder.encode("ping"));
    assert.equal(await readText(conn, 4), "ping");
    const delayedMs = performance.now() - began;
    assert.ok(delayedMs >= 200, `a round trip took ${delayedMs} ms, under twice the latency`);

    proxy.delay(undefined);
    began = performance.now();
    await conn.write(encoder.encode("pong"));
    assert.equal(await readText(conn, 4), "pong");
    const plainMs = performance.now() - began;
    assert.ok(plainMs < 100, `a round trip without latency took ${plainMs} ms`);
  });
});

Deno.test("delay() with jitter keeps the bytes in order and holds them at once, not in turn", async () => {
  await throughProxy(async (conn, proxy) => {
    proxy.delay({ ms: 100, jitterMs: 80 });
    const words = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(2, "0")};`);
    const began = performance.now();
    for (const word of words) await conn.write(encoder.encode(word));
    assert.equal(await readText(conn, words.join("").length), words.join(""));
    // Held one after another, 40 chunks would take seconds; held together, one latency or two.
    const tookMs = performance.now() - began;
    assert.ok(tookMs < 1500, `40 writes took ${tookMs} ms to come back`);
  });
});

Deno.test("freeze() moves no byte until restore(), and cut() closes the connection", async () => {
  await throughProxy(async (conn, proxy) => {
    proxy.freeze();
    await conn.write(encoder.encode("held"));
    const reading = readText(conn, 4);
    const early = await Promise.race([
      reading,
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 200)),
    ]);
    assert.equal(early, undefined, "a byte got through a frozen proxy");
    proxy.restore();
    assert.equal(await reading, "held");

    proxy.cut();
    assert.equal(await conn.read(new Uint8Array(1)), null);
  });
});
