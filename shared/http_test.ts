/** What every service serves besides its own routes: readiness and the limit on requests in flight. */
import assert from "node:assert/strict";
import { Hono } from "hono";
import { serviceApp } from "./http.ts";
import { openStore, type Store } from "./store.ts";
import { watchOutages } from "./outage.ts";
import type { Broker } from "./broker.ts";
import { recordingLogger } from "./_test_log.ts";

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
  options: { broker?: Partial<Broker>; maxInFlight?: number } = {},
): Hono {
  const { log } = recordingLogger();
  const broker = { connected: true, unattachedQueues: [], ...options.broker } as Broker;
  const outages = watchOutages(store, { log });
  return serviceApp(routes, { store, broker, outages, log, maxInFlight: options.maxInFlight });
}

Deno.test("serviceApp() is not ready while a consumer has not subscribed, and says which", async () => {
  await withStore(async (store) => {
    const broker = { unattachedQueues: ["order-status"] } as Partial<Broker>;
    const response = await appOf(new Hono(), store, { broker }).request("/ready");
    assert.equal(response.status, 503);
    assert.deepEqual((await response.json()).failed, { broker: "not consuming order-status yet" });
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
