import assert from "node:assert/strict";
import type { Hono } from "hono";
import { openStore, type Store } from "../shared/store.ts";
import { claimOutbox, listenOutbox } from "../shared/outbox.ts";
import { orderPlacedSchema, parseEvent } from "../shared/events.ts";
import { changeStatus, ORDER_MIGRATIONS } from "./orders.ts";
import { MAX_BODY_BYTES, orderRoutes } from "./routes.ts";
import { serviceApp } from "../shared/http.ts";
import { PAUSED_MSG, RESUMED_MSG, watchOutages } from "../shared/outage.ts";
import type { Broker } from "../shared/broker.ts";
import { recordingLogger } from "../shared/testing/recording_logger.ts";
import { mountTmpfs, tmpfsUnavailable } from "../shared/testing/tmpfs.ts";
import { sign } from "hono/jwt";
import type { AuthConfig } from "../shared/auth.ts";

interface Harness {
  app: Hono;
  store: Store;
  /** How many commits woke the outbox's listeners (the relay). */
  commits: () => number;
}

/** Runs `fn` with the order routes over a store in a fresh temp dir, removed after. */
async function withApp(
  fn: (harness: Harness) => Promise<void>,
  options: { onCommit?: () => void; auth?: AuthConfig; maxUnitsPerStudent?: number } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "order_routes_test_" });
  try {
    const store = await openStore(dir, "order", { migrations: ORDER_MIGRATIONS });
    try {
      let commits = 0;
      listenOutbox(store, () => {
        commits++;
        options.onCommit?.();
      });
      const { auth, maxUnitsPerStudent } = options;
      const app = orderRoutes(store, { auth, maxUnitsPerStudent });
      await fn({ app, store, commits: () => commits });
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const VALID = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

async function post(
  app: Hono,
  body: unknown,
  options: { path?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  return await app.request(options.path ?? "/order", {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function counts(store: Store): Promise<{ orders: number; outbox: number; keys: number }> {
  return await store.read(async (tx) => {
    const count = async (table: string) =>
      (await tx.get<{ n: number }>(`SELECT count(*) AS n FROM ${table}`))!.n;
    return {
      orders: await count("orders"),
      outbox: await count("outbox"),
      keys: await count("idempotency_keys"),
    };
  });
}

async function assertNothingStored(store: Store): Promise<void> {
  assert.deepEqual(await counts(store), { orders: 0, outbox: 0, keys: 0 });
}

interface ErrorBody {
  error: string;
  issues?: Array<{ field: string; reason: string }>;
}

/**
 * Runs `fn` with `harness`'s routes inside the whole app of the service, its broker connected and
 * every queue consumed; stops watching for outages after.
 */
async function withServiceApp(harness: Harness, fn: (whole: Hono) => Promise<void>): Promise<void> {
  const { log } = recordingLogger();
  const { store } = harness;
  const outages = watchOutages(store, { log });
  const broker = { connected: true, unattachedQueues: [] } as unknown as Broker;
  try {
    await fn(serviceApp(harness.app, { store, broker, outages, log }));
  } finally {
    await outages.stop();
  }
}

/**
 * Expects `response` to refuse its request with `status`, with a JSON error matching `error` where
 * one is given, and that nothing was stored or published.
 */
async function assertRefused(
  harness: Harness,
  response: Response,
  expected: { status: number; error?: RegExp },
): Promise<void> {
  assert.equal(response.status, expected.status);
  if (expected.error) assert.match((await response.json() as ErrorBody).error, expected.error);
  else await response.body?.cancel();
  await assertNothingStored(harness.store);
  assert.equal(harness.commits(), 0);
}

/** Posts `body`, expects a 400 whose JSON error names `field`, and that nothing was stored. */
async function assertRejected(
  harness: Harness,
  body: unknown,
  field: string,
  pattern?: RegExp,
): Promise<void> {
  const response = await post(harness.app, body);
  assert.equal(response.status, 400);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  const json = await response.json() as ErrorBody;
  assert.equal(typeof json.error, "string");
  assert.ok(
    json.error.includes(field) || json.issues?.some((issue) => issue.field === field),
    `expected the error to name ${field}: ${JSON.stringify(json)}`,
  );
  if (pattern) assert.match(JSON.stringify(json), pattern);
  await assertNothingStored(harness.store);
  assert.equal(harness.commits(), 0);
}

for (const path of ["/order", "/orders"]) {
  Deno.test(`orderRoutes() POST ${path} accepts an order with 202, PENDING and a Location`, async () => {
    await withApp(async ({ app, store, commits }) => {
      const response = await post(app, VALID, { path });
      assert.equal(response.status, 202);
      const json = await response.json() as { order_id: string; status: string };
      assert.deepEqual(Object.keys(json).sort(), ["order_id", "status"]);
      assert.equal(json.status, "PENDING");
      assert.match(json.order_id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.equal(response.headers.get("location"), `/orders/${json.order_id}`);
      assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 0 });
      assert.equal(commits(), 1);
    });
  });
}

Deno.test("orderRoutes() POST /order stores the order's OrderPlaced event in the outbox", async () => {
  await withApp(async ({ app, store }) => {
    const items = [{ sku: "burger", qty: 2 }, { sku: "soda", qty: 1 }];
    const response = await post(app, { user_id: "u9", items });
    const { order_id } = await response.json() as { order_id: string };
    const [row] = await store.read((tx) => claimOutbox(tx, 10));
    assert.equal(row.event_type, "OrderPlaced");
    assert.equal(row.correlation_id, order_id);
    const parsed = parseEvent(new TextEncoder().encode(row.body), orderPlacedSchema);
    assert.ok(parsed.ok);
    assert.equal(parsed.event.event_id, row.event_id);
    assert.equal(parsed.event.order.order_id, order_id);
    assert.equal(parsed.event.order.user_id, "u9");
    assert.deepEqual(parsed.event.order.items, items);
    const { created_at, decide_by } = parsed.event.order;
    assert.equal(Date.parse(decide_by!) - Date.parse(created_at!), 120_000);
  });
});

Deno.test("orderRoutes() GET /orders/{id} returns the stored order", async () => {
  await withApp(async ({ app }) => {
    const created = await post(app, { user_id: "u1", items: [{ sku: "fries", qty: 3 }] });
    const { order_id } = await created.json() as { order_id: string };
    const response = await app.request(`/orders/${order_id}`);
    assert.equal(response.status, 200);
    const order = await response.json();
    assert.equal(order.order_id, order_id);
    assert.equal(order.user_id, "u1");
    assert.deepEqual(order.items, [{ sku: "fries", qty: 3 }]);
    assert.equal(order.status, "PENDING");
    assert.equal("reason" in order, false);
    assert.ok(!Number.isNaN(Date.parse(order.created_at)));
    assert.ok(!Number.isNaN(Date.parse(order.updated_at)));
  });
});

Deno.test("orderRoutes() GET /orders/{id} returns 404 for an unknown order", async () => {
  await withApp(async ({ app }) => {
    const response = await app.request("/orders/01J0000000000000000000NOPE");
    assert.equal(response.status, 404);
    const json = await response.json() as ErrorBody;
    assert.equal(typeof json.error, "string");
  });
});

Deno.test("orderRoutes() POST /order rejects invalid JSON with 400", async () => {
  await withApp(async (harness) => {
    const response = await post(harness.app, '{"user_id": "u1", "items": [');
    await assertRefused(harness, response, { status: 400, error: /JSON/ });
  });
});

Deno.test("orderRoutes() POST /order rejects an empty body with 400", async () => {
  await withApp(async (harness) => {
    await assertRefused(harness, await post(harness.app, ""), { status: 400 });
  });
});

Deno.test("orderRoutes() POST /order rejects a JSON array or null with 400", async () => {
  await withApp(async (harness) => {
    for (const body of ["[]", "null", '"order"']) {
      const response = await post(harness.app, body);
      assert.equal(response.status, 400, body);
      await response.body?.cancel();
    }
    await assertNothingStored(harness.store);
  });
});

Deno.test("orderRoutes() POST /order rejects a missing user_id with 400", async () => {
  await withApp((harness) => assertRejected(harness, { items: VALID.items }, "user_id"));
});

Deno.test("orderRoutes() POST /order rejects an empty user_id with 400", async () => {
  await withApp((harness) => assertRejected(harness, { ...VALID, user_id: "" }, "user_id"));
});

Deno.test("orderRoutes() POST /order rejects a user_id of 129 chars with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, { ...VALID, user_id: "u".repeat(129) }, "user_id")
  );
});

Deno.test("orderRoutes() POST /order accepts a user_id of 128 chars", async () => {
  await withApp(async ({ app, store }) => {
    const response = await post(app, { ...VALID, user_id: "u".repeat(128) });
    assert.equal(response.status, 202);
    assert.equal((await counts(store)).orders, 1);
  });
});

const UNPRINTABLE_CASES: Record<string, string> = {
  "NUL": "\u0000",
  "a newline": "\n",
  "ESC": "\u001b",
  "DEL": "\u007f",
  "a C1 control (NEL)": "\u0085",
  "the line separator": "\u2028",
  "the paragraph separator": "\u2029",
  "a right-to-left override": "\u202e",
  "a left-to-right isolate": "\u2066",
  "a right-to-left mark": "\u200f",
  "a lone surrogate": "\ud800",
};

for (const [name, character] of Object.entries(UNPRINTABLE_CASES)) {
  Deno.test(`orderRoutes() POST /order rejects a user_id or a sku with ${name} with 400`, async () => {
    await withApp((harness) =>
      assertRejected(harness, { ...VALID, user_id: `u${character}1` }, "user_id", /printable/)
    );
    await withApp((harness) =>
      assertRejected(
        harness,
        { ...VALID, items: [{ sku: "soda", qty: 1 }, { sku: `bur${character}ger`, qty: 1 }] },
        "items[1].sku",
        /printable/,
      )
    );
  });
}

Deno.test("orderRoutes() POST /order accepts printable text beyond ASCII in user_id and sku", async () => {
  await withApp(async ({ app, store }) => {
    const body = { user_id: "Zoë 李 👩‍🍳", items: [{ sku: "crème-brûlée", qty: 1 }] };
    const response = await post(app, body);
    assert.equal(response.status, 202);
    const { order_id } = await response.json();
    const order = await (await app.request(`/orders/${order_id}`)).json();
    assert.equal(order.user_id, body.user_id);
    assert.deepEqual(order.items, body.items);
    assert.equal((await counts(store)).orders, 1);
  });
});

Deno.test("orderRoutes() POST /order rejects a user_id that is not a string with 400", async () => {
  await withApp((harness) => assertRejected(harness, { ...VALID, user_id: 42 }, "user_id"));
});

Deno.test("orderRoutes() POST /order rejects empty items with 400", async () => {
  await withApp((harness) => assertRejected(harness, { ...VALID, items: [] }, "items"));
});

Deno.test("orderRoutes() POST /order rejects 51 items with 400", async () => {
  const items = Array.from({ length: 51 }, () => ({ sku: "soda", qty: 1 }));
  await withApp((harness) => assertRejected(harness, { ...VALID, items }, "items"));
});

Deno.test("orderRoutes() POST /order accepts 50 items", async () => {
  const items = Array.from({ length: 50 }, (_, i) => ({ sku: `sku${i}`, qty: 1 }));
  await withApp(async ({ app, store }) => {
    const response = await post(app, { ...VALID, items });
    assert.equal(response.status, 202);
    assert.equal((await counts(store)).orders, 1);
  });
});

Deno.test("orderRoutes() POST /order rejects items that are not an array with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, { ...VALID, items: { sku: "burger", qty: 1 } }, "items")
  );
});

Deno.test("orderRoutes() POST /order rejects an empty sku with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, { ...VALID, items: [{ sku: "", qty: 1 }] }, "items[0].sku")
  );
});

Deno.test("orderRoutes() POST /order rejects a sku of 65 chars with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, {
      ...VALID,
      items: [{ sku: "burger", qty: 1 }, { sku: "s".repeat(65), qty: 1 }],
    }, "items[1].sku")
  );
});

Deno.test("orderRoutes() POST /order accepts a sku of 64 chars", async () => {
  await withApp(async ({ app }) => {
    const response = await post(app, { ...VALID, items: [{ sku: "s".repeat(64), qty: 1 }] });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  });
});

for (
  const [label, qty] of [
    ["0", 0],
    ["101", 101],
    ["1.5", 1.5],
    ['"1"', "1"],
    ["-1", -1],
    ["null", null],
  ] as const
) {
  Deno.test(`orderRoutes() POST /order rejects qty ${label} with 400`, async () => {
    await withApp((harness) =>
      assertRejected(harness, { ...VALID, items: [{ sku: "burger", qty }] }, "items[0].qty")
    );
  });
}

Deno.test("orderRoutes() POST /order accepts qty 1 and 100", async () => {
  await withApp(async ({ app, store }) => {
    const response = await post(app, {
      ...VALID,
      items: [{ sku: "burger", qty: 1 }, { sku: "soda", qty: 100 }],
    });
    assert.equal(response.status, 202);
    assert.equal((await counts(store)).orders, 1);
  });
});

Deno.test("orderRoutes() POST /order rejects a missing qty with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, { ...VALID, items: [{ sku: "burger" }] }, "items[0].qty")
  );
});

Deno.test("orderRoutes() POST /order rejects an unknown top-level field with 400", async () => {
  await withApp((harness) =>
    assertRejected(harness, { ...VALID, coupon: "FREE" }, "coupon", /coupon/)
  );
});

Deno.test("orderRoutes() POST /order rejects an unknown item field with 400", async () => {
  await withApp((harness) =>
    assertRejected(
      harness,
      { ...VALID, items: [{ sku: "burger", qty: 1, price: 0 }] },
      "price",
      /items/,
    )
  );
});

Deno.test("orderRoutes() POST /order lists every invalid field in issues", async () => {
  await withApp(async ({ app, store }) => {
    const response = await post(app, { user_id: "", items: [{ sku: "", qty: 0 }] });
    assert.equal(response.status, 400);
    const json = await response.json() as ErrorBody;
    const fields = json.issues?.map((issue) => issue.field).sort();
    assert.deepEqual(fields, ["items[0].qty", "items[0].sku", "user_id"]);
    assert.ok(json.issues?.every((issue) => issue.reason.length > 0));
    await assertNothingStored(store);
  });
});

/** A valid order body padded with spaces to exactly `size` bytes. */
function paddedBody(size: number): string {
  const body = JSON.stringify(VALID);
  return body.slice(0, -1) + " ".repeat(size - body.length) + "}";
}

Deno.test("orderRoutes() POST /order accepts a body of exactly 64 KiB", async () => {
  await withApp(async ({ app, store }) => {
    const body = paddedBody(MAX_BODY_BYTES);
    assert.equal(new TextEncoder().encode(body).length, 64 * 1024);
    const response = await post(app, body);
    assert.equal(response.status, 202);
    assert.equal((await counts(store)).orders, 1);
  });
});

Deno.test("orderRoutes() POST /order rejects a body over 64 KiB with 413", async () => {
  await withApp(async ({ app, store, commits }) => {
    const response = await post(app, paddedBody(MAX_BODY_BYTES + 1));
    assert.equal(response.status, 413);
    const json = await response.json() as ErrorBody;
    assert.equal(typeof json.error, "string");
    await assertNothingStored(store);
    assert.equal(commits(), 0);
  });
});

Deno.test("orderRoutes() POST /order rejects a streamed body over 64 KiB with 413", async () => {
  await withApp(async (harness) => {
    const chunk = new TextEncoder().encode(" ".repeat(16 * 1024));
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 5) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const response = await harness.app.request("/order", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      duplex: "half",
    } as RequestInit);
    await assertRefused(harness, response, { status: 413 });
  });
});

Deno.test("orderRoutes() POST /order rejects text/plain with 415", async () => {
  await withApp(async (harness) => {
    const response = await post(harness.app, VALID, { headers: { "content-type": "text/plain" } });
    await assertRefused(harness, response, { status: 415, error: /application\/json/ });
  });
});

Deno.test("orderRoutes() POST /order rejects a request without content-type with 415", async () => {
  await withApp(async (harness) => {
    // A Uint8Array body, unlike a string, gets no default content-type from `Request`.
    const request = new Request("http://localhost/order", {
      method: "POST",
      body: new TextEncoder().encode(JSON.stringify(VALID)),
    });
    assert.equal(request.headers.get("content-type"), null);
    await assertRefused(harness, await harness.app.request(request), { status: 415 });
  });
});

Deno.test("orderRoutes() POST /order refuses a body it would have to decode first with 415", async () => {
  await withApp(async (harness) => {
    const response = await post(harness.app, VALID, { headers: { "content-encoding": "gzip" } });
    await assertRefused(harness, response, { status: 415, error: /content-encoding "gzip"/ });
  });
});

Deno.test("orderRoutes() POST /order refuses a body that is not UTF-8 with 400, rather than storing U+FFFD", async () => {
  await withApp(async (harness) => {
    const text = new TextEncoder().encode(JSON.stringify({ ...VALID, user_id: "u#" }));
    text[text.indexOf("#".charCodeAt(0))] = 0xff;
    const response = await harness.app.request(
      new Request("http://localhost/order", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: text,
      }),
    );
    await assertRefused(harness, response, { status: 400, error: /not UTF-8/ });
  });
});

Deno.test("orderRoutes() POST /order accepts application/json with a charset", async () => {
  await withApp(async ({ app }) => {
    const response = await post(app, VALID, {
      headers: { "content-type": "application/json; charset=utf-8" },
    });
    assert.equal(response.status, 202);
    await response.body?.cancel();
  });
});

Deno.test("orderRoutes() POST /order with the same Idempotency-Key and body returns the same order", async () => {
  await withApp(async ({ app, store, commits }) => {
    const headers = { "idempotency-key": "retry-1" };
    const first = await post(app, VALID, { headers });
    const second = await post(app, VALID, { headers });
    const third = await post(app, VALID, { path: "/orders", headers });
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    assert.equal(third.status, 202);
    const ids = await Promise.all(
      [first, second, third].map(async (r) => (await r.json() as { order_id: string }).order_id),
    );
    assert.equal(new Set(ids).size, 1);
    assert.equal(second.headers.get("location"), `/orders/${ids[0]}`);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    assert.equal(second.headers.get("idempotent-replayed"), "true");
    assert.equal(third.headers.get("idempotent-replayed"), "true");
    assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 1 });
    assert.equal(commits(), 1);
  });
});

Deno.test("orderRoutes() POST /order with the same Idempotency-Key and another body is 409", async () => {
  await withApp(async ({ app, store, commits }) => {
    const headers = { "idempotency-key": "retry-2" };
    const first = await post(app, VALID, { headers });
    const { order_id } = await first.json() as { order_id: string };
    const second = await post(app, { ...VALID, items: [{ sku: "burger", qty: 2 }] }, { headers });
    assert.equal(second.status, 409);
    const json = await second.json() as ErrorBody & { field?: string; order_id?: string };
    assert.match(json.error, /Idempotency-Key/);
    assert.equal(json.order_id, undefined, "another client's order id is not disclosed");
    assert.equal(typeof order_id, "string");
    assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 1 });
    assert.equal(commits(), 1);
  });
});

Deno.test("orderRoutes() POST /order gives two students using the same Idempotency-Key two orders", async () => {
  await withApp(async ({ app, store }) => {
    const headers = { "idempotency-key": "lunch" };
    const b = await post(app, { ...VALID, user_id: "b" }, { headers });
    assert.equal(b.status, 202);
    // Neither a 409 nor a replay: nothing tells a that b used the key.
    const a = await post(app, { ...VALID, user_id: "a" }, { headers });
    assert.equal(a.status, 202);
    assert.equal(a.headers.get("idempotent-replayed"), null);
    const [first, second] = [await b.json(), await a.json()];
    assert.notEqual(first.order_id, second.order_id);
    const replay = await post(app, { ...VALID, user_id: "a" }, { headers });
    assert.equal(replay.status, 202);
    assert.equal((await replay.json()).order_id, second.order_id);
    const other = await post(app, { user_id: "a", items: [{ sku: "soda", qty: 1 }] }, { headers });
    assert.equal(other.status, 409);
    assert.deepEqual(await counts(store), { orders: 2, outbox: 2, keys: 2 });
  });
});

Deno.test("orderRoutes() POST /order with different Idempotency-Keys creates two orders", async () => {
  await withApp(async ({ app, store, commits }) => {
    const first = await post(app, VALID, { headers: { "idempotency-key": "a" } });
    const second = await post(app, VALID, { headers: { "idempotency-key": "b" } });
    const ids = await Promise.all(
      [first, second].map(async (r) => (await r.json() as { order_id: string }).order_id),
    );
    assert.notEqual(ids[0], ids[1]);
    assert.deepEqual(await counts(store), { orders: 2, outbox: 2, keys: 2 });
    assert.equal(commits(), 2);
  });
});

Deno.test("orderRoutes() POST /order with concurrent retries of one Idempotency-Key creates one order", async () => {
  await withApp(async ({ app, store }) => {
    const headers = { "idempotency-key": "burst" };
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => post(app, VALID, { headers })),
    );
    const ids = await Promise.all(responses.map(async (r) => {
      assert.equal(r.status, 202);
      return (await r.json() as { order_id: string }).order_id;
    }));
    assert.equal(new Set(ids).size, 1);
    assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 1 });
  });
});

Deno.test("orderRoutes() POST /order rejects an empty Idempotency-Key with 400", async () => {
  await withApp(async (harness) => {
    const response = await post(harness.app, VALID, { headers: { "idempotency-key": "" } });
    await assertRefused(harness, response, { status: 400, error: /Idempotency-Key/ });
  });
});

Deno.test("orderRoutes() POST /order without Idempotency-Key creates a new order each time", async () => {
  await withApp(async ({ app, store, commits }) => {
    for (let i = 0; i < 3; i++) {
      const response = await post(app, VALID);
      assert.equal(response.status, 202);
      await response.body?.cancel();
    }
    assert.deepEqual(await counts(store), { orders: 3, outbox: 3, keys: 0 });
    assert.equal(commits(), 3);
  });
});

Deno.test("orderRoutes() wakes the outbox's listeners once per created order only, after its commit", async () => {
  const seen: Array<{ orders: number; outbox: number; keys: number }> = [];
  let store: Store | undefined;
  const observed: Promise<void>[] = [];
  await withApp(async (harness) => {
    store = harness.store;
    const headers = { "idempotency-key": "once" };
    const statuses = [
      (await post(harness.app, VALID, { headers })).status,
      (await post(harness.app, VALID, { headers })).status,
      (await post(harness.app, { ...VALID, items: [{ sku: "soda", qty: 2 }] }, { headers }))
        .status,
      (await post(harness.app, { ...VALID, items: [] })).status,
      (await post(harness.app, VALID, { path: "/orders" })).status,
    ];
    assert.deepEqual(statuses, [202, 202, 409, 400, 202]);
    await Promise.all(observed);
    assert.equal(harness.commits(), 2);
    // Each call saw its own order committed, outbox row included.
    assert.deepEqual(seen, [{ orders: 1, outbox: 1, keys: 1 }, { orders: 2, outbox: 2, keys: 1 }]);
  }, {
    onCommit: () => {
      observed.push(counts(store!).then((c) => void seen.push(c)));
    },
  });
});

Deno.test("orderRoutes() works without options", async () => {
  const dir = await Deno.makeTempDir({ prefix: "order_routes_test_" });
  try {
    const store = await openStore(dir, "order", { migrations: ORDER_MIGRATIONS });
    try {
      const response = await post(orderRoutes(store), VALID);
      assert.equal(response.status, 202);
      await response.body?.cancel();
      assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 0 });
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function placeAndCancel(app: Hono): Promise<{ orderId: string; response: Response }> {
  const { order_id } = await (await post(app, VALID)).json() as { order_id: string };
  const response = await app.request(`/orders/${order_id}/cancel`, { method: "POST" });
  return { orderId: order_id, response };
}

Deno.test("orderRoutes() POST /orders/{id}/cancel answers 202 CANCELLED, and the same again", async () => {
  await withApp(async ({ app, store, commits }) => {
    const { orderId, response } = await placeAndCancel(app);
    assert.equal(response.status, 202);
    assert.deepEqual(await response.json(), { order_id: orderId, status: "CANCELLED" });
    assert.deepEqual(await counts(store), { orders: 1, outbox: 2, keys: 0 });
    assert.equal(commits(), 2, "the relay is woken for the OrderCancelled");
    const again = await app.request(`/orders/${orderId}/cancel`, { method: "POST" });
    assert.equal(again.status, 202);
    assert.deepEqual(await again.json(), { order_id: orderId, status: "CANCELLED" });
    assert.deepEqual(await counts(store), { orders: 1, outbox: 2, keys: 0 });
    assert.equal(commits(), 2);
    const order = await (await app.request(`/orders/${orderId}`)).json();
    assert.equal(order.status, "CANCELLED");
  });
});

for (const status of ["REJECTED", "EXPIRED"] as const) {
  Deno.test(`orderRoutes() POST /orders/{id}/cancel of a ${status} order is 409 with its status`, async () => {
    await withApp(async ({ app, store }) => {
      const { order_id } = await (await post(app, VALID)).json() as { order_id: string };
      await store.transaction((tx) => changeStatus(tx, order_id, { from: "PENDING", to: status }));
      const response = await app.request(`/orders/${order_id}/cancel`, { method: "POST" });
      assert.equal(response.status, 409);
      const json = await response.json();
      assert.equal(json.status, status);
      assert.match(json.error, new RegExp(`as it is ${status}`));
      assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 0 });
    });
  });
}

Deno.test("orderRoutes() POST /orders/{id}/cancel of an unknown order is a JSON 404", async () => {
  await withApp(async ({ app, store }) => {
    const response = await app.request("/orders/01J0000000000000000000NOPE/cancel", {
      method: "POST",
    });
    assert.equal(response.status, 404);
    assert.equal(typeof (await response.json()).error, "string");
    assert.deepEqual(await counts(store), { orders: 0, outbox: 0, keys: 0 });
  });
});

Deno.test("serviceApp() answers a wrong method with a JSON 405 and Allow, an unknown path with a JSON 404", async () => {
  await withApp((harness) =>
    withServiceApp(harness, async (whole) => {
      const cases: Array<[string, string, number, string | null]> = [
        ["GET", "/orders/01J0000000000000000000NOPE/cancel", 405, "POST"],
        ["DELETE", "/orders/01J0000000000000000000NOPE", 405, "GET, HEAD"],
        ["PUT", "/order", 405, "POST"],
        ["POST", "/health", 405, "GET, HEAD"],
        ["GET", "/nowhere", 404, null],
        ["POST", "/orders/x/cancel/more", 404, null],
      ];
      for (const [method, path, status, allow] of cases) {
        const response = await whole.request(path, { method });
        assert.equal(response.status, status, `${method} ${path}`);
        assert.equal(response.headers.get("allow"), allow, `${method} ${path}`);
        assert.equal(typeof (await response.json()).error, "string", `${method} ${path}`);
      }
      assert.deepEqual(await counts(harness.store), { orders: 0, outbox: 0, keys: 0 });
    })
  );
});

Deno.test({
  name:
    "serviceApp(orderRoutes()) answers POST /order with 503, Retry-After and a JSON error while the disk is full, keeps nothing of it, and accepts orders again once there is room (sqlite)",
  ignore: (await tmpfsUnavailable()) !== undefined,
  fn: async () => {
    const disk = await mountTmpfs(4);
    const store = await openStore(disk.path, "order", { migrations: ORDER_MIGRATIONS });
    const { log, lines } = recordingLogger();
    const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
    // /ready is not asked here; the broker is only needed to build the app.
    const broker = { connected: true, unattachedQueues: [] } as unknown as Broker;
    const app = serviceApp(orderRoutes(store), { store, broker, outages, log });
    try {
      await disk.fill();
      const refused = await post(app, VALID, { headers: { "idempotency-key": "k1" } });
      assert.equal(refused.status, 503);
      assert.match(refused.headers.get("content-type") ?? "", /application\/json/);
      assert.match(refused.headers.get("retry-after") ?? "", /^[1-9]\d*$/);
      assert.equal(typeof (await refused.json()).error, "string");
      const ready = await app.request("/ready");
      assert.equal(ready.status, 503);
      assert.match((await ready.json()).failed.database, /^paused: database or disk is full/);
      await assertNothingStored(store);

      await disk.free();
      await outages.recovered();
      const accepted = await post(app, VALID, { headers: { "idempotency-key": "k1" } });
      assert.equal(accepted.status, 202);
      assert.equal(accepted.headers.get("idempotent-replayed"), null, "a new order, not a replay");
      assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 1 });
      assert.deepEqual(lines, [
        `warn ${PAUSED_MSG}`,
        `info ${RESUMED_MSG}`,
      ]);
    } finally {
      await outages.stop();
      await store.close();
      await disk.unmount();
    }
  },
});

const SECRET = "order-routes-test-secret-0123456789abcdef";
const AUTH = { auth: { jwtSecret: SECRET } };

/** The Authorization header of a token for `sub`, with `claims` such as a role. */
async function bearer(sub: string, claims: Record<string, unknown> = {}): Promise<
  Record<string, string>
> {
  const exp = Math.floor(Date.now() / 1000) + 600;
  return { authorization: `Bearer ${await sign({ sub, exp, ...claims }, SECRET, "HS256")}` };
}

async function placedBy(app: Hono, sub: string, body: unknown = { items: VALID.items }) {
  const response = await post(app, body, { headers: await bearer(sub) });
  assert.equal(response.status, 202);
  return (await response.json() as { order_id: string }).order_id;
}

Deno.test("orderRoutes() with auth places an order in the name of the token's subject", async () => {
  await withApp(async ({ app, store }) => {
    const order_id = await placedBy(app, "u1");
    const order = await app.request(`/orders/${order_id}`, { headers: await bearer("u1") });
    assert.equal((await order.json()).user_id, "u1");
    await placedBy(app, "u1", VALID);
    assert.deepEqual(await counts(store), { orders: 2, outbox: 2, keys: 0 });
  }, AUTH);
});

Deno.test("orderRoutes() with auth refuses an order without a token (401) or in another student's name (403), keeping nothing", async () => {
  await withApp(async ({ app, store, commits }) => {
    const anonymous = await post(app, VALID);
    assert.equal(anonymous.status, 401);
    assert.match((await anonymous.json()).error, /bearer token/);
    const impostor = await post(app, { ...VALID, user_id: "u2" }, { headers: await bearer("u1") });
    assert.equal(impostor.status, 403);
    assert.deepEqual(await impostor.json(), {
      error: "user_id must be the bearer token's subject",
      field: "user_id",
    });
    await assertNothingStored(store);
    assert.equal(commits(), 0);
  }, AUTH);
});

Deno.test("orderRoutes() with auth lets an admin place an order for any student", async () => {
  await withApp(async ({ app }) => {
    const response = await post(app, { ...VALID, user_id: "u2" }, {
      headers: await bearer("desk", { role: "admin" }),
    });
    assert.equal(response.status, 202);
    const { order_id } = await response.json();
    const order = await app.request(`/orders/${order_id}`, { headers: await bearer("u2") });
    assert.equal((await order.json()).user_id, "u2");
  }, AUTH);
});

Deno.test("orderRoutes() with auth answers GET /orders/{id} of another student's order as if it did not exist", async () => {
  await withApp(async ({ app }) => {
    const order_id = await placedBy(app, "u1");
    const unknown = await app.request("/orders/01J0000000000000000000NOPE", {
      headers: await bearer("u2"),
    });
    const others = await app.request(`/orders/${order_id}`, { headers: await bearer("u2") });
    assert.equal(others.status, 404);
    assert.deepEqual(await others.json(), await unknown.json());
    assert.equal((await app.request(`/orders/${order_id}`)).status, 401);
    const admin = await app.request(`/orders/${order_id}`, {
      headers: await bearer("desk", { roles: ["admin"] }),
    });
    assert.equal(admin.status, 200);
  }, AUTH);
});

Deno.test("orderRoutes() with auth lets only the owner or an admin cancel an order", async () => {
  await withApp(async ({ app, store }) => {
    const order_id = await placedBy(app, "u1");
    const cancel = async (headers: Record<string, string>) =>
      await app.request(`/orders/${order_id}/cancel`, { method: "POST", headers });
    const others = await cancel(await bearer("u2"));
    assert.equal(others.status, 404);
    assert.equal((await others.json()).error, "order not found");
    assert.equal((await cancel({})).status, 401);
    assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 0 }, "nothing cancelled");
    const own = await cancel(await bearer("u1"));
    assert.equal(own.status, 202);
    assert.equal((await own.json()).status, "CANCELLED");
    const second = await placedBy(app, "u1");
    const byAdmin = await app.request(`/orders/${second}/cancel`, {
      method: "POST",
      headers: await bearer("desk", { role: "admin" }),
    });
    assert.equal(byAdmin.status, 202);
  }, AUTH);
});

Deno.test("serviceApp(orderRoutes()) with auth serves /health, /ready and /metrics, and answers unknown paths, without a token", async () => {
  await withApp((harness) =>
    withServiceApp(harness, async (whole) => {
      for (const path of ["/health", "/ready", "/metrics"]) {
        assert.equal((await whole.request(path)).status, 200, path);
      }
      assert.equal((await whole.request("/nowhere")).status, 404);
      assert.equal((await whole.request("/order", { method: "PUT" })).status, 405);
    }), AUTH);
});

Deno.test("orderRoutes() with maxUnitsPerStudent answers an order beyond the cap with a JSON 409 naming it, keeping nothing", async () => {
  await withApp(async ({ app, store, commits }) => {
    const first = await post(app, { user_id: "u1", items: [{ sku: "burger", qty: 3 }] });
    assert.equal(first.status, 202);
    const refused = await post(app, { user_id: "u1", items: [{ sku: "soda", qty: 2 }] }, {
      headers: { "idempotency-key": "more" },
    });
    assert.equal(refused.status, 409);
    assert.match(refused.headers.get("content-type") ?? "", /application\/json/);
    const json = await refused.json();
    assert.match(json.error, /MAX_UNITS_PER_STUDENT \(4\)/);
    assert.deepEqual([json.limit, json.held, json.requested], [4, 3, 2]);
    assert.deepEqual(await counts(store), { orders: 1, outbox: 1, keys: 0 });
    assert.equal(commits(), 1);
    assert.equal(
      (await post(app, { user_id: "u2", items: [{ sku: "soda", qty: 4 }] })).status,
      202,
    );
  }, { maxUnitsPerStudent: 4 });
});
