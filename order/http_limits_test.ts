/**
 * The order service's HTTP edges over a real socket: clients that trickle a body, or send headers
 * too large, against `serveHttp(serviceApp(orderRoutes()))` as `main.ts` wires it.
 * @module
 */
import assert from "node:assert/strict";
import { openStore, type Store } from "../shared/store.ts";
import { serveHttp, serviceApp } from "../shared/http.ts";
import { watchOutages } from "../shared/outage.ts";
import type { Broker } from "../shared/broker.ts";
import { recordingLogger } from "../shared/testing/recording_logger.ts";
import { ORDER_MIGRATIONS } from "./orders.ts";
import { orderRoutes } from "./routes.ts";

/** Runs `fn` with the order service's whole app served on a free loopback port. */
async function withServer(
  options: { maxInFlight: number; bodyTimeoutMs: number },
  fn: (server: { url: string; port: number; store: Store }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "order_http_limits_test_" });
  const store = await openStore(dir, "order", { migrations: ORDER_MIGRATIONS });
  const { log } = recordingLogger();
  const outages = watchOutages(store, { log });
  // Only /ready would ask the broker; it is not asked here.
  const broker = { connected: true, unattachedQueues: [] } as unknown as Broker;
  const app = serviceApp(orderRoutes(store), { store, broker, outages, log, ...options });
  const server = serveHttp(app, 0, log);
  try {
    await fn({ url: `http://127.0.0.1:${server.port}`, port: server.port, store });
  } finally {
    await server.shutdown();
    await outages.stop();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A raw HTTP/1.1 client that sends its body one byte at a time. */
interface TrickleClient {
  /** The status and body of the answer, once it came; the status is 0 if none came. */
  answer: Promise<{ status: number; body: string }>;
  /** Bytes of the body written so far. */
  sent(): number;
  close(): void;
}

/** Opens a connection to `port` and posts an order whose body comes one byte per `everyMs`. */
async function trickle(port: number, everyMs: number): Promise<TrickleClient> {
  const body = JSON.stringify({ user_id: "slow", items: [{ sku: "burger", qty: 1 }] });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const encoder = new TextEncoder();
  await conn.write(encoder.encode(
    "POST /order HTTP/1.1\r\nHost: order\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${body.length}\r\n\r\n`,
  ));
  let sent = 0;
  let closed = false;
  const timer = setInterval(() => {
    if (closed || sent >= body.length) return;
    conn.write(encoder.encode(body[sent])).then(() => sent++, () => clearInterval(timer));
  }, everyMs);
  const answer = readAnswer(conn).finally(() => clearInterval(timer));
  return {
    answer,
    sent: () => sent,
    close() {
      closed = true;
      clearInterval(timer);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  };
}

/** Reads one HTTP/1.1 answer from `conn`: its status and its body (as long as Content-Length). */
async function readAnswer(conn: Deno.Conn): Promise<{ status: number; body: string }> {
  const buffer = new Uint8Array(64 * 1024);
  let text = "";
  const decoder = new TextDecoder();
  while (true) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) break;
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) continue;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
    if (text.length >= end + 4 + length) break;
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
  return { status, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
}

async function postOrder(url: string): Promise<Response> {
  return await fetch(`${url}/order`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: "quick", items: [{ sku: "burger", qty: 1 }] }),
  });
}

async function countOrders(store: Store): Promise<number> {
  return (await store.read((tx) => tx.get<{ n: number }>("SELECT count(*) AS n FROM orders")))!.n;
}

Deno.test("serveHttp(serviceApp(orderRoutes())) cuts off bodies trickled over real sockets with 408 and accepts orders again within the body timeout", async () => {
  const bodyTimeoutMs = 400;
  await withServer({ maxInFlight: 2, bodyTimeoutMs }, async ({ url, port, store }) => {
    const clients: TrickleClient[] = [];
    try {
      // Two take both slots; the two after them are refused at once.
      for (let i = 0; i < 4; i++) clients.push(await trickle(port, 100));
      const blocked = await postOrder(url);
      assert.equal(blocked.status, 503, "every slot is held by a slow body");
      await blocked.body?.cancel();

      const started = performance.now();
      let accepted: Response | undefined;
      while (performance.now() - started < bodyTimeoutMs + 2000) {
        const response = await postOrder(url);
        if (response.status === 202) {
          accepted = response;
          break;
        }
        assert.equal(response.status, 503);
        await response.body?.cancel();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(accepted, `no order accepted within ${bodyTimeoutMs + 2000} ms of slow bodies`);
      assert.equal((await accepted.json()).status, "PENDING");

      const answers = await Promise.all(clients.map((client) => client.answer));
      assert.deepEqual(answers.map((a) => a.status).sort(), [408, 408, 503, 503]);
      for (const { status, body } of answers.filter((a) => a.status === 408)) {
        assert.match(JSON.parse(body).error, /did not arrive within 400 ms/, `${status} ${body}`);
      }
      // The cut-off clients had not sent their whole body: they were slow, not finished.
      const body = JSON.stringify({ user_id: "slow", items: [{ sku: "burger", qty: 1 }] });
      assert.ok(clients.every((client) => client.sent() < body.length));
      assert.equal(await countOrders(store), 1, "only the quick order is stored");
    } finally {
      for (const client of clients) client.close();
    }
  });
});

/** Sends `request` on a connection of its own and reads the status line of the answer. */
async function rawStatus(port: number, request: string | Uint8Array): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = typeof request === "string" ? new TextEncoder().encode(request) : request;
    const writing = (async () => {
      for (let offset = 0; offset < bytes.length;) {
        offset += await conn.write(bytes.subarray(offset));
      }
    })().catch(() => {});
    const { status } = await readAnswer(conn);
    await writing;
    return status;
  } finally {
    conn.close();
  }
}

Deno.test("serveHttp() refuses a 1 MB header, 200 headers and a 1 MB URL with 400 before the app, without keeping them", async () => {
  await withServer({ maxInFlight: 2, bodyTimeoutMs: 1000 }, async ({ url, port, store }) => {
    const big = "a".repeat(1 << 20);
    const many = Array.from({ length: 200 }, (_, i) => `X-Header-${i}: v\r\n`).join("");
    const cases: Record<string, string> = {
      "1 MB header": `GET /health HTTP/1.1\r\nHost: order\r\nX-Big: ${big}\r\n\r\n`,
      "200 headers": `GET /health HTTP/1.1\r\nHost: order\r\n${many}\r\n`,
      "1 MB URL": `GET /orders/${big} HTTP/1.1\r\nHost: order\r\n\r\n`,
    };
    // The server answers 400 and closes while the client is still writing; now and then the
    // reset of that close overtakes the answer, and the client sees the connection end (0).
    const refused = [400, 0];
    for (const [name, request] of Object.entries(cases)) {
      const status = await rawStatus(port, request);
      assert.ok(refused.includes(status), `${name}: ${status}`);
    }
    // Each refused header is dropped with its connection: 200 MB more of them leave memory flat.
    // The request is encoded once, so that the client in this process allocates nothing per send.
    const bigHeader = new TextEncoder().encode(cases["1 MB header"]);
    const sendBigHeaders = async (times: number) => {
      for (let i = 0; i < times; i++) {
        const status = await rawStatus(port, bigHeader);
        assert.ok(refused.includes(status), `1 MB header, again: ${status}`);
      }
    };
    await sendBigHeaders(20);
    const before = Deno.memoryUsage().rss;
    await sendBigHeaders(200);
    const grownMb = (Deno.memoryUsage().rss - before) / 2 ** 20;
    assert.ok(grownMb < 20, `resident memory grew by ${grownMb.toFixed(1)} MB`);
    assert.equal((await (await fetch(`${url}/health`)).json()).status, "ok");
    assert.equal(await countOrders(store), 0);
  });
});
