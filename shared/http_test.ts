/** What every service serves besides its own routes: readiness and the limit on requests in flight. */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { serveHttp, serviceApp } from "./http.ts";
import { openStore, type Store } from "./store.ts";
import { watchOutages } from "./outage.ts";
import type { Broker } from "./broker.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { renderMetrics } from "./metrics.ts";

async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "http_test_" });
  const store = await openStore(dir, "http", { migrations: [] });
  try {
    await fn(store);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function appOf(
  routes: Hono,
  store: Store,
  options: { broker?: Partial<Broker>; maxInFlight?: number; bodyTimeoutMs?: number } = {},
): Hono {
  const { log } = recordingLogger();
  const broker = { connected: true, unattachedQueues: [], ...options.broker } as Broker;
  const outages = watchOutages(store, { log });
  const { maxInFlight, bodyTimeoutMs } = options;
  return serviceApp(routes, { store, broker, outages, log, maxInFlight, bodyTimeoutMs });
}

Deno.test("serviceApp() is not ready while a consumer has not subscribed, and says which", async () => {
  await withStore(async (store) => {
    const broker = { unattachedQueues: ["inventory-reserved"] } as Partial<Broker>;
    const response = await appOf(new Hono(), store, { broker }).request("/ready");
    assert.equal(response.status, 503);
    assert.deepEqual((await response.json()).failed, {
      broker: "not consuming inventory-reserved yet",
    });
    const ready = await appOf(new Hono(), store).request("/ready");
    assert.equal(ready.status, 200);
  });
});

Deno.test("serviceApp() answers 503 with Retry-After past maxInFlight requests, while /health, /ready and /metrics still answer", async () => {
  await withStore(async (store) => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => release = resolve);
    let started = 0;
    const routes = new Hono().post("/work", async (c) => {
      started++;
      await held;
      return c.json({ done: true }, 202);
    });
    const app = appOf(routes, store, { maxInFlight: 2 });
    const first = [
      app.request("/work", { method: "POST" }),
      app.request("/work", { method: "POST" }),
    ];
    while (started < 2) await new Promise((resolve) => setTimeout(resolve, 1));
    const refused = await app.request("/work", { method: "POST" });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.match((await refused.json()).error, /over 2 requests in flight/);
    for (const path of ["/health", "/ready", "/metrics"]) {
      assert.equal((await app.request(path)).status, 200, path);
    }
    assert.equal(started, 2);
    release();
    for (const response of await Promise.all(first)) assert.equal(response.status, 202);
    assert.equal((await app.request("/work", { method: "POST" })).status, 202);
  });
});

/** The lines of `/metrics` of HTTP requests and their durations. */
async function httpSeries(): Promise<string[]> {
  return (await renderMetrics()).split("\n").filter((line) =>
    line.startsWith("campus_food_http_request")
  );
}

Deno.test("serviceApp() counts requests with made-up methods under one method label, other", async () => {
  await withStore(async (store) => {
    const app = appOf(new Hono().get("/known", (c) => c.json({})), store);
    const before = new Set(await httpSeries());
    for (let i = 0; i < 200; i++) {
      const method = `M${i}${"X".repeat(400)}`;
      assert.equal((await app.request("/known", { method })).status, 405);
      assert.equal((await app.request(`/nowhere/${i}`, { method })).status, 404);
    }
    const added = (await httpSeries()).filter((line) => !before.has(line));
    const series = new Set(
      added.filter((line) => line.startsWith("campus_food_http_requests_total")).map((line) =>
        line.replace(/ \d+$/, "")
      ),
    );
    // 405 and 404 are two statuses of one route, `unmatched`: at most those two series, ever.
    assert.ok(series.size <= 2, [...series].join("\n"));
    for (const line of series) assert.match(line, /method="other",route="unmatched"/);
    assert.ok(added.every((line) => !line.includes("XXXX")), "no made-up method is a label");
  });
});

/** A body that sends `first` and then nothing more until it is cancelled. */
function stalledBody(first: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(first));
    },
  });
}

/** A POST whose body stalls after its first bytes. */
function stalledPost(app: Hono, path: string): Promise<Response> {
  return Promise.resolve(app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: stalledBody('{"user_id"'),
    duplex: "half",
  } as RequestInit));
}

Deno.test("serviceApp() answers 408 to a body that has not arrived within bodyTimeoutMs, and frees its slot", async () => {
  await withStore(async (store) => {
    let handled = 0;
    const routes = new Hono().post("/work", async (c) => {
      const text = await c.req.text();
      handled++;
      return c.json({ length: text.length }, 202);
    });
    const app = appOf(routes, store, { maxInFlight: 1, bodyTimeoutMs: 100 });
    const started = performance.now();
    const slow = await stalledPost(app, "/work");
    assert.equal(slow.status, 408);
    assert.match((await slow.json()).error, /did not arrive within 100 ms/);
    assert.ok(performance.now() - started < 2000, "cut off at the deadline, not later");
    assert.equal(handled, 0);
    const next = await app.request("/work", { method: "POST", body: "{}" });
    assert.equal(next.status, 202, "the slot is free again");
    assert.deepEqual(await next.json(), { length: 2 });
  });
});

Deno.test("serviceApp() answers 408 to a late body even when the handler swallows the failed read", async () => {
  await withStore(async (store) => {
    const routes = new Hono().post("/work", async (c) => {
      try {
        await c.req.text();
      } catch {
        return c.json({ error: "not JSON" }, 400);
      }
      return c.json({}, 202);
    });
    const app = appOf(routes, store, { bodyTimeoutMs: 50 });
    const slow = await stalledPost(app, "/work");
    assert.equal(slow.status, 408);
    assert.match(slow.headers.get("content-type") ?? "", /application\/json/);
  });
});

Deno.test("serviceApp() lets a handler that never reads the body answer, however slow the body", async () => {
  await withStore(async (store) => {
    const routes = new Hono().post("/ignore", async (c) => {
      await new Promise((resolve) => setTimeout(resolve, 100));
      return c.json({ ignored: true });
    });
    const app = appOf(routes, store, { bodyTimeoutMs: 20 });
    const response = await stalledPost(app, "/ignore");
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

/** An address of this machine other than loopback, if it has one. */
function outsideAddress(): string | undefined {
  return Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))
    ?.address;
}

/** True when a TCP connection to `hostname`:`port` is accepted. */
async function accepts(hostname: string, port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname, port })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "serveHttp() listens on loopback only unless given a host, and logs the host",
  ignore: outsideAddress() === undefined,
  fn: async () => {
    const app = new Hono().get("/", (c) => c.text("hi"));
    const listened: Array<Record<string, unknown>> = [];
    const { log } = recordingLogger();
    log.info = (msg, fields) => void listened.push({ msg, ...fields });
    const loopback = serveHttp(app, 0, log);
    try {
      assert.equal(await accepts("127.0.0.1", loopback.port), true);
      assert.equal(await accepts(outsideAddress()!, loopback.port), false);
    } finally {
      await loopback.shutdown();
    }
    const everywhere = serveHttp(app, 0, log, { hostname: "0.0.0.0" });
    try {
      assert.equal(await accepts(outsideAddress()!, everywhere.port), true);
    } finally {
      await everywhere.shutdown();
    }
    assert.deepEqual(listened.map(({ msg, host }) => `${msg} ${host}`), [
      "listening 127.0.0.1",
      "listening 0.0.0.0",
    ]);
  },
});
