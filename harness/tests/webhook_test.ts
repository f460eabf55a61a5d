/**
 * Webhook delivery (SPEC: Webhook delivery, guarantee 7) against the real services and broker,
 * with a receiver of the tests' own that verifies every signature with the `standardwebhooks`
 * library: whatever the receiver does (fails, answers slowly or too late, is down for over a
 * minute) and whatever happens to notification (SIGKILLed mid-delivery, two instances on one
 * PostgreSQL, an outage of its PostgreSQL), every recorded notification is delivered at least once, every repeat carries the
 * same `webhook-id` and the same body, and every signature is valid.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { notificationsOf, placeOrder, readMetric } from "../lib/http_probes.ts";
import { INTEGRATION, type Stack, withStack } from "../lib/stack.ts";
import { ON_POSTGRES, postgresTest } from "../lib/on_postgres.ts";
import { withProxiedDatabase } from "../lib/proxied_database.ts";
import { HARNESS_SECURE } from "../lib/secure_mode.ts";
import {
  type ReceivedWebhook,
  startWebhookReceiver,
  type WebhookReceiver,
  type WebhookReceiverOptions,
} from "../lib/webhook_receiver.ts";
import type { ListedNotification } from "../../notification/notifications.ts";
import { PAUSED_MSG } from "../../shared/outage.ts";

/** Places `count` orders that are confirmed; returns their ids. */
function placeOrders(stack: Stack, count: number, prefix: string): Promise<string[]> {
  return Promise.all(
    Array.from(
      { length: count },
      (_, i) => placeOrder(stack, { user_id: `${prefix}${i}`, items: [{ sku: "burger", qty: 1 }] }),
    ),
  );
}

/** The notifications of `orderIds`, once each has one and every delivery is `status`. */
function waitDeliveries(
  stack: Stack,
  orderIds: string[],
  status: "pending" | "delivered",
  timeoutMs: number,
): Promise<ListedNotification[]> {
  return waitFor(`every notification's delivery to be ${status}`, async () => {
    const lists = await Promise.all(orderIds.map((id) => notificationsOf(stack, id)));
    const all = lists.flat() as ListedNotification[];
    const done = lists.every((list) => list.length > 0) &&
      all.every((n) => n.delivery?.status === status);
    return done && all;
  }, { timeoutMs, intervalMs: 200 });
}

/**
 * Asserts what a receiver may rely on: every notification reached it with a 2xx answer under its
 * own `webhook-id`, every repeat of an id has the same body, which says what was recorded, and
 * every signature verified. @returns the requests per `webhook-id`
 */
function assertDelivered(
  receiver: WebhookReceiver,
  notifications: ListedNotification[],
): Map<string, ReceivedWebhook[]> {
  assert.deepEqual(receiver.received.filter((r) => !r.valid), [], "every signature is valid");
  const byId = Map.groupBy(receiver.received, (r) => r.id);
  for (const n of notifications) {
    const requests = byId.get(n.delivery!.webhook_id) ?? [];
    assert.ok(requests.some((r) => r.status! >= 200 && r.status! < 300), `${n.order_id} delivered`);
    assert.equal(new Set(requests.map((r) => r.body)).size, 1, "every repeat has the same body");
    const body = JSON.parse(requests[0].body);
    assert.equal(body.type, n.kind.replace("_", "."));
    assert.deepEqual(body.data, {
      order_id: n.order_id,
      user_id: n.user_id,
      kind: n.kind,
      message: n.message,
      created_at: n.created_at,
    });
    assert.ok(n.delivery!.attempts >= requests.length, "every attempt is counted");
  }
  // One webhook-id per notification: the receiver never sees one notification under two ids.
  const notified = new Set(notifications.map((n) => n.delivery!.webhook_id));
  assert.deepEqual([...byId.keys()].filter((id) => !notified.has(id)), []);
  return byId;
}

/** Runs `fn` with a receiver answering as `options` says and a stack whose notification uses it. */
async function withReceiver(
  options: WebhookReceiverOptions,
  fn: (stack: Stack, receiver: WebhookReceiver) => Promise<void>,
  stackEnv: Record<string, string> = {},
): Promise<void> {
  const receiver = startWebhookReceiver(options);
  try {
    await withStack(
      { env: stackEnv, serviceEnv: { notification: receiver.env } },
      (stack) => fn(stack, receiver),
    );
  } finally {
    await receiver.close();
  }
}

/**
 * The options of a test of the sender's timing, which least privilege does not change: it runs
 * once, not again in the secure pass of `deno task test`.
 */
const TIMING_ONLY = { ...INTEGRATION, ignore: HARNESS_SECURE };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test(
  "webhook: a receiver failing the first attempts gets every notification, first retry within a second, against the broker",
  INTEGRATION,
  async () => {
    await withReceiver({ answer: (_, nth) => nth <= 2 ? 500 : 204 }, async (stack, receiver) => {
      const orderIds = await placeOrders(stack, 5, "fails-first-");
      const notifications = await waitDeliveries(stack, orderIds, "delivered", 30_000);
      const byId = assertDelivered(receiver, notifications);
      for (const requests of byId.values()) {
        assert.deepEqual(requests.slice(0, 3).map((r) => r.status), [500, 500, 204]);
        assert.ok(requests[1].at - requests[0].at < 1500, "the first retry comes within a second");
      }
      assert.ok(notifications.every((n) => n.delivery!.attempts === 3));
      assert.ok(notifications.every((n) => n.delivery!.delivered_at! >= n.created_at));
    });
  },
);

Deno.test(
  "webhook: a receiver slower than 10 s holds up no recording, and every notification is still delivered, against the broker",
  TIMING_ONLY,
  async () => {
    await withReceiver({
      // The first attempt of each notification is answered after 12 s: past the sender's timeout.
      answer: async (_, nth) => {
        if (nth === 1) await sleep(12_000);
        return 200;
      },
    }, async (stack, receiver) => {
      const started = Date.now();
      const orderIds = await placeOrders(stack, 5, "slow-");
      // Recorded (and listed as pending) while the receiver still sits on the first attempts.
      await waitDeliveries(stack, orderIds, "pending", 8000);
      assert.ok(receiver.received.every((r) => r.status === undefined), "no attempt answered yet");
      assert.ok(Date.now() - started < 10_000);
      const notifications = await waitDeliveries(stack, orderIds, "delivered", 30_000);
      const byId = assertDelivered(receiver, notifications);
      for (const requests of byId.values()) {
        assert.ok(requests.length >= 2, "the unanswered attempt was tried again");
        assert.ok(requests[1].at - requests[0].at >= 9_500, "after the 10 s timeout");
      }
    });
  },
);

Deno.test(
  "webhook: a 2xx after the 10 s timeout is sent again under the same webhook-id, against the broker",
  TIMING_ONLY,
  async () => {
    const processed: string[] = [];
    await withReceiver({
      answer: async (request, nth) => {
        if (nth === 1) await sleep(10_500);
        // The receiver did its work and answers 2xx, but too late for the sender.
        processed.push(request.id);
        return 200;
      },
    }, async (stack, receiver) => {
      const orderIds = await placeOrders(stack, 2, "late-");
      const notifications = await waitDeliveries(stack, orderIds, "delivered", 40_000);
      const byId = assertDelivered(receiver, notifications);
      // Each notification was processed twice by the receiver: a repeat it must drop by its id.
      await waitFor(
        "the late answers",
        () => [...byId.keys()].every((id) => processed.filter((p) => p === id).length >= 2),
      );
      for (const requests of byId.values()) {
        assert.equal(requests.length, 2);
        assert.ok(requests[1].at - requests[0].at >= 9_500, "sent again after the timeout");
      }
      assert.ok(notifications.every((n) => n.delivery!.attempts === 2));
    });
  },
);

Deno.test(
  "webhook: a receiver down for over a minute gets the notification, attempts never more than a minute apart, against the broker",
  TIMING_ONLY,
  async () => {
    const DOWN_MS = 61_000;
    let firstAt: number | undefined;
    await withReceiver({
      answer: (request) => {
        firstAt ??= request.at;
        return request.at - firstAt < DOWN_MS ? 503 : 204;
      },
    }, async (stack, receiver) => {
      const [orderId] = await placeOrders(stack, 1, "down-");
      const notifications = await waitDeliveries(stack, [orderId], "delivered", 130_000);
      const byId = assertDelivered(receiver, notifications);
      const requests = [...byId.values()][0];
      const gaps = requests.slice(1).map((r, i) => r.at - requests[i].at);
      assert.ok(gaps.every((gap) => gap <= 60_000), `gaps ${gaps.join(", ")} ms`);
      assert.ok(gaps.slice(1).some((gap, i) => gap > gaps[i]), "delays grow");
      const upAt = firstAt! + DOWN_MS;
      const deliveredAt = requests.find((r) => r.status === 204)!.at;
      assert.ok(deliveredAt - upAt <= 60_000, `delivered ${deliveredAt - upAt} ms after it was up`);
      assert.ok(requests.length >= 6, `${requests.length} attempts`);
    });
  },
);

Deno.test(
  "webhook: notification SIGKILLed mid-delivery sends the same deliveries again once restarted, against the broker",
  INTEGRATION,
  async () => {
    const { promise: released, resolve: release } = Promise.withResolvers<void>();
    await withReceiver({
      // The first attempts are held until notification is dead; later ones are answered.
      answer: async (_, nth) => {
        if (nth === 1) await released;
        return 204;
      },
    }, async (stack, receiver) => {
      try {
        const orderIds = await placeOrders(stack, 3, "killed-");
        await waitFor("three deliveries in flight", () => receiver.received.length === 3);
        await stack.stop("notification", "SIGKILL");
        await stack.start("notification");
        const notifications = await waitDeliveries(stack, orderIds, "delivered", 30_000);
        const byId = assertDelivered(receiver, notifications);
        assert.equal(byId.size, 3);
        for (const requests of byId.values()) assert.ok(requests.length >= 2, "sent again");
      } finally {
        release();
      }
    });
  },
);

postgresTest(
  "webhook: two notification instances on one PostgreSQL never send one delivery at once and lose none, against the broker",
  async (database) => {
    await withReceiver({
      // Slow enough for attempts to overlap, and failing the first, so retries race too.
      answer: async (_, nth) => {
        await sleep(200);
        return nth === 1 ? 500 : 204;
      },
    }, async (stack, receiver) => {
      const second = await stack.startInstance("notification");
      const orderIds = await placeOrders(stack, 40, "pair-");
      const notifications = await waitDeliveries(stack, orderIds, "delivered", 60_000);
      assertDelivered(receiver, notifications);
      assert.deepEqual(receiver.overlapping, [], "no delivery in flight twice at once");
      assert.equal(notifications.length, 40);
      assert.ok(receiver.maxInFlight > 1, "deliveries in flight together");
      // Both instances sent: the claims really competed.
      for (const url of [stack.url("notification"), second.url]) {
        assert.ok(await readMetric(url, "campus_food_webhook_attempts_total") > 0, url);
      }
    }, { DATABASE_URL: database.url });
  },
);

Deno.test(
  "webhook: a PostgreSQL outage under notification pauses the sender, and every notification is still delivered under one id, against the broker",
  ON_POSTGRES,
  async () => {
    await withProxiedDatabase(async ({ url, proxy }) => {
      const receiver = startWebhookReceiver({
        // Slow enough that the outage comes while attempts are in flight.
        answer: async () => {
          await sleep(300);
          return 204;
        },
      });
      try {
        await withStack({
          serviceEnv: {
            notification: { ...receiver.env, DATABASE_URL: url },
          },
        }, async (stack) => {
          const orderIds = await placeOrders(stack, 10, "outage-");
          await waitFor("attempts in flight", () => receiver.received.length > 0);
          proxy.cut();
          await waitFor(
            "notification to pause for the outage",
            () => stack.services.notification!.logs.some((l) => l.msg === PAUSED_MSG),
          );
          proxy.restore();
          const notifications = await waitDeliveries(stack, orderIds, "delivered", 60_000);
          assertDelivered(receiver, notifications);
          assert.equal(notifications.length, 10);
          assert.equal(
            stack.services.notification!.logs.filter((l) => l.level === "error").length,
            0,
            "no delivery failed for the outage",
          );
        });
      } finally {
        await receiver.close();
      }
    });
  },
);
