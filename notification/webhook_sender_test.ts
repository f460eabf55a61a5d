import assert from "node:assert/strict";
import { Webhook } from "standardwebhooks";
import { storeKinds } from "../shared/testing/stores.ts";
import { recordingLogger } from "../shared/testing/recording_logger.ts";
import { watchOutages } from "../shared/outage.ts";
import type { Store } from "../shared/store.ts";
import { renderMetrics } from "../shared/metrics.ts";
import { NOTIFICATION_MIGRATIONS, notifyOrder } from "./notifications.ts";
import { claimDeliveries } from "./webhook_deliveries.ts";
import { startWebhookSender, type WebhookSenderOptions } from "./webhook_sender.ts";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KEY = Uint8Array.from(atob(SECRET.slice(6)), (c) => c.charCodeAt(0));
/** Longer than any test runs: a delivery sent within a test was sent because of a wake. */
const NO_POLL = 60_000;
const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;

/** One request the receiver got, its signature verified. */
interface Received {
  id: string;
  body: string;
}

/** A receiver that verifies every request with the standardwebhooks library, then asks `answer`. */
function receiver(answer: (request: Received, nth: number) => Promise<number> | number) {
  const verifier = new Webhook(SECRET);
  const received: Received[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const body = await req.text();
    verifier.verify(body, Object.fromEntries(req.headers)); // throws, and answers 500, if bad
    const request = { id: req.headers.get("webhook-id")!, body };
    received.push(request);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const nth = received.filter((r) => r.id === request.id).length;
      return new Response(null, { status: await answer(request, nth) });
    } finally {
      inFlight--;
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    received,
    get maxInFlight() {
      return maxInFlight;
    },
    close: () => server.shutdown(),
  };
}

async function notify(store: Store, orderIds: string[]): Promise<void> {
  await store.transaction(async (tx) => {
    for (const id of orderIds) {
      const notice = { kind: "order_confirmed", order: { order_id: id, user_id: "u1" } } as const;
      await notifyOrder(tx, notice, { webhook: true });
    }
  });
}

async function statuses(store: Store): Promise<Array<[string, string, number]>> {
  const rows = await store.read((tx) =>
    tx.all<{ order_id: string; status: string; attempts: number }>(
      "SELECT order_id, status, attempts FROM webhook_deliveries ORDER BY order_id",
    )
  );
  return rows.map((r) => [r.order_id, r.status, Number(r.attempts)]);
}

async function until(what: string, condition: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Runs `fn` with a sender of `store` to `url`; stops it after. */
async function withSender(
  store: Store,
  options: Partial<WebhookSenderOptions> & { url: string },
  fn: (lines: string[]) => Promise<void>,
): Promise<void> {
  const { log, lines } = recordingLogger();
  const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
  const sender = startWebhookSender(store, {
    key: KEY,
    log,
    outages,
    pollIntervalMs: NO_POLL,
    backoff: { initialDelayMs: 20, maxDelayMs: 50 },
    ...options,
  });
  try {
    await fn(lines);
  } finally {
    await sender.stop();
    await outages.stop();
  }
}

Deno.test("startWebhookSender() POSTs each notification once, signed, when its commit wakes it", async () => {
  const hook = receiver(() => 204);
  try {
    await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await withSender(store, { url: hook.url }, async () => {
        await notify(store, ["o1", "o2"]);
        await until(
          "two deliveries",
          async () => (await statuses(store)).every(([, status]) => status === "delivered"),
        );
        assert.deepEqual(await statuses(store), [["o1", "delivered", 1], ["o2", "delivered", 1]]);
        assert.equal(hook.received.length, 2);
        const body = JSON.parse(hook.received.find((r) => r.body.includes('"o1"'))!.body);
        assert.equal(body.type, "order.confirmed");
        assert.deepEqual(Object.keys(body.data), [
          "order_id",
          "user_id",
          "kind",
          "message",
          "created_at",
        ]);
        assert.equal(body.timestamp, body.data.created_at);
        const metrics = await renderMetrics();
        assert.match(metrics, /campus_food_webhook_deliveries_total\{status="delivered"\} 2/);
        assert.match(metrics, /campus_food_webhook_pending 0/);
      });
    });
  } finally {
    await hook.close();
  }
});

Deno.test("startWebhookSender() retries a refused or unanswered attempt under the same webhook-id with the same body", async () => {
  const hook = receiver(async (_, nth) => {
    if (nth === 1) return 500;
    if (nth === 2) await new Promise((resolve) => setTimeout(resolve, 400)); // past the timeout
    return 200;
  });
  try {
    await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await withSender(store, { url: hook.url, timeoutMs: 200, leaseMs: 5000 }, async (lines) => {
        await notify(store, ["o1"]);
        await until("delivered", async () => (await statuses(store))[0][1] === "delivered");
        assert.deepEqual(await statuses(store), [["o1", "delivered", 3]]);
        assert.equal(hook.received.length, 3);
        assert.equal(new Set(hook.received.map((r) => r.id)).size, 1);
        assert.equal(new Set(hook.received.map((r) => r.body)).size, 1);
        assert.ok(lines.includes("warn cannot deliver to the webhook, will retry"), String(lines));
        const metrics = await renderMetrics();
        for (const outcome of ["refused", "timeout", "delivered"]) {
          assert.match(
            metrics,
            new RegExp(`webhook_attempts_total\\{outcome="${outcome}"\\} [1-9]`),
          );
        }
      });
    });
  } finally {
    await hook.close();
  }
});

Deno.test("startWebhookSender() keeps many attempts in flight, never more than maxInFlight", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  const hook = receiver(async () => {
    await release;
    return 200;
  });
  try {
    await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await withSender(store, { url: hook.url, maxInFlight: 4 }, async () => {
        await notify(store, Array.from({ length: 10 }, (_, i) => `o${i}`));
        await until("four in flight", () => hook.received.length === 4);
        // Held, the receiver gets no fifth: the bound holds.
        await until(
          "the claims to settle",
          async () => (await statuses(store)).filter(([, , attempts]) => attempts > 0).length === 4,
        );
        assert.equal(hook.received.length, 4);
        resolve();
        await until(
          "all delivered",
          async () => (await statuses(store)).every(([, status]) => status === "delivered"),
        );
        assert.equal(hook.maxInFlight, 4);
        assert.equal(hook.received.length, 10);
      });
    });
  } finally {
    resolve();
    await hook.close();
  }
});

Deno.test("startWebhookSender() marks a delivery failed once its retry window has passed", async () => {
  const hook = receiver(() => 503);
  try {
    await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await withSender(
        store,
        { url: hook.url, backoff: { initialDelayMs: 10, maxDelayMs: 20, giveUpAfterMs: 300 } },
        async (lines) => {
          await notify(store, ["o1"]);
          await until("failed", async () => (await statuses(store))[0][1] === "failed");
          const [[, , attempts]] = await statuses(store);
          assert.ok(attempts >= 3, `${attempts} attempts`);
          assert.equal(hook.received.length, attempts);
          assert.ok(lines.includes("error webhook delivery failed after retrying for a day"));
          assert.match(await renderMetrics(), /webhook_deliveries_total\{status="failed"\} 1/);
        },
      );
    });
  } finally {
    await hook.close();
  }
});

Deno.test("startWebhookSender() on SQLite sends at once what a crashed sender left leased, and a stop gives back what is in flight", async () => {
  let hold = true;
  const hook = receiver(async () => {
    while (hold) await new Promise((resolve) => setTimeout(resolve, 20));
    return 200;
  });
  try {
    await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      await notify(store, ["o1", "o2"]);
      // A process that died mid-attempt: o1 leased for long.
      await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 1, now: Date.now(), leaseMs: 3_600_000 })
      );
      await withSender(store, { url: hook.url }, async () => {
        await until("both in flight", () => hook.received.length === 2);
      });
      // Stopped mid-attempt: both given back, due now.
      assert.deepEqual((await statuses(store)).map(([, status]) => status), ["pending", "pending"]);
      hold = false;
      await withSender(store, { url: hook.url }, async () => {
        await until(
          "delivered",
          async () => (await statuses(store)).every(([, status]) => status === "delivered"),
        );
      });
      const ids = hook.received.map((r) => r.id);
      assert.equal(ids.length, 4);
      assert.equal(new Set(ids).size, 2, "the same two webhook-ids, each sent twice");
    });
  } finally {
    hold = false;
    await hook.close();
  }
});
