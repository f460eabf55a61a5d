import assert from "node:assert/strict";
import { storeKinds } from "../shared/testing/stores.ts";
import type { Store } from "../shared/store.ts";
import {
  type Notification,
  NOTIFICATION_MIGRATIONS,
  recordNotifications,
} from "./notifications.ts";
import {
  claimDeliveries,
  deliveryBody,
  enqueueDeliveries,
  listDeliveries,
  markAttemptFailed,
  markDelivered,
  readDeliveryBacklog,
  releaseLeases,
  retryDelivery,
  watchWebhookDeliveries,
} from "./webhook_deliveries.ts";
import { renderMetrics } from "../shared/metrics.ts";

const T0 = Date.parse("2026-01-01T00:00:00.000Z");

function notification(orderId: string, offsetMs = 0): Notification {
  return {
    order_id: orderId,
    user_id: "u1",
    kind: "order_confirmed",
    message: `order ${orderId} confirmed`,
    created_at: new Date(T0 + offsetMs).toISOString(),
  };
}

async function enqueue(store: Store, count: number): Promise<string[]> {
  const notifications = Array.from({ length: count }, (_, i) => notification(`o${i}`, i));
  return await store.transaction(async (tx) => {
    await recordNotifications(tx, notifications);
    return await enqueueDeliveries(tx, notifications);
  });
}

for (const kind of await storeKinds()) {
  Deno.test(`claimDeliveries() leases due deliveries, oldest first, and counts the attempt (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const ids = await enqueue(store, 3);
      const claim = (now: number, limit = 10) =>
        store.transaction((tx) => claimDeliveries(tx, { limit, now, leaseMs: 30_000 }));
      const first = await claim(T0 + 1000, 2);
      assert.deepEqual(first.map((d) => d.webhook_id).sort(), ids.slice(0, 2).sort());
      assert.deepEqual(first.map((d) => d.attempts), [1, 1]);
      for (const delivery of first) {
        const orderId = JSON.parse(delivery.body).data.order_id;
        assert.equal(delivery.body, deliveryBody(notification(orderId, Number(orderId.slice(1)))));
      }
      // Leased: nobody claims them again before the lease ends, but the third is free.
      assert.deepEqual((await claim(T0 + 2000)).map((d) => d.webhook_id), [ids[2]]);
      assert.deepEqual(await claim(T0 + 3000), []);
      // A sender that died holding a lease: its deliveries come back when the lease ends.
      const again = await claim(T0 + 2000 + 30_000);
      assert.equal(again.length, 3);
      assert.ok(again.every((d) => d.attempts === 2));
    });
  });

  Deno.test(`markAttemptFailed() reschedules or fails, and only under the lease it was claimed with (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const [id] = await enqueue(store, 1);
      const claim = (now: number) =>
        store.transaction((tx) => claimDeliveries(tx, { limit: 10, now, leaseMs: 30_000 }));
      const [stale] = await claim(T0);
      // The lease ran out and another sender took it: the first one's failure changes nothing.
      const [current] = await claim(T0 + 31_000);
      assert.equal(current.webhook_id, id);
      assert.equal(
        await store.transaction((tx) =>
          markAttemptFailed(tx, stale, { retryAt: T0 + 32_000, error: "HTTP 500" })
        ),
        false,
      );
      assert.ok(
        await store.transaction((tx) =>
          markAttemptFailed(tx, current, { retryAt: T0 + 40_000, error: "HTTP 500" })
        ),
      );
      assert.deepEqual(await claim(T0 + 39_999), [], "not due before its retry time");
      const [third] = await claim(T0 + 40_000);
      assert.equal(third.attempts, 3);
      assert.ok(
        await store.transaction((tx) => markAttemptFailed(tx, third, { error: "gave up" })),
      );
      assert.deepEqual(await claim(T0 + 100_000), [], "a failed delivery is not tried again");
      assert.equal((await store.read(readDeliveryBacklog)).count, 0);
    });
  });

  Deno.test(`markDelivered() ends a delivery for good, and releaseLeases() frees those in flight (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const [a, b] = await enqueue(store, 2);
      assert.deepEqual(await store.read(readDeliveryBacklog), {
        count: 2,
        oldestCreatedAt: new Date(T0).toISOString(),
      });
      const claimed = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: T0 + 5, leaseMs: 30_000 })
      );
      assert.equal(claimed.length, 2);
      assert.ok(await store.transaction((tx) => markDelivered(tx, a, T0 + 10)));
      assert.equal(await store.transaction((tx) => markDelivered(tx, a, T0 + 20)), false);
      assert.equal(await store.transaction(releaseLeases), 1);
      const [again] = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: T0 + 30, leaseMs: 30_000 })
      );
      assert.equal(again.webhook_id, b);
      assert.equal(again.attempts, 2);
      assert.equal((await store.read(readDeliveryBacklog)).count, 1);
    });
  });
}

Deno.test("watchWebhookDeliveries() reports at each scrape the pending deliveries and the age of the oldest", async () => {
  const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;
  await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
    watchWebhookDeliveries(store);
    const scrape = async (name: string) =>
      (await renderMetrics()).split("\n").filter((line) => line.startsWith(`${name} `))
        .map((line) => Number(line.split(" ")[1]));
    assert.deepEqual(await scrape("campus_food_webhook_pending"), [0]);
    assert.deepEqual(await scrape("campus_food_webhook_oldest_pending_age_seconds"), [0]);
    const [first] = await enqueue(store, 2);
    assert.deepEqual(await scrape("campus_food_webhook_pending"), [2]);
    const [age] = await scrape("campus_food_webhook_oldest_pending_age_seconds");
    assert.ok(age >= (Date.now() - T0) / 1000 - 1, `age ${age}`);
    await store.transaction((tx) => markDelivered(tx, first, Date.now()));
    assert.deepEqual(await scrape("campus_food_webhook_pending"), [1]);
  });
});

const postgres = (await storeKinds()).find((kind) => kind.name === "postgres");

Deno.test({
  name:
    "claimDeliveries() on PostgreSQL: two senders claiming at once never take the same delivery",
  ignore: postgres === undefined,
  async fn() {
    await postgres!.with("notification", NOTIFICATION_MIGRATIONS, async (store, reopen) => {
      const ids = await enqueue(store, 60);
      const other = await reopen();
      const taken: string[] = [];
      // Each round, both stores claim concurrently, each in its own transaction.
      for (let round = 0; round < 10; round++) {
        const [mine, theirs] = await Promise.all(
          [store, other].map((s) =>
            s.transaction((tx) =>
              claimDeliveries(tx, { limit: 4, now: T0 + 1000, leaseMs: 30_000 })
            )
          ),
        );
        taken.push(...mine.map((d) => d.webhook_id), ...theirs.map((d) => d.webhook_id));
      }
      assert.equal(taken.length, 60);
      assert.equal(new Set(taken).size, 60, "no delivery claimed twice");
      assert.deepEqual([...taken].sort(), [...ids].sort());
    });
  },
});

for (const kind of await storeKinds()) {
  Deno.test(`listDeliveries() counts pending and failed, and lists one status newest first with its last error (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const ids = await enqueue(store, 4);
      const claimed = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: T0 + 10, leaseMs: 30_000 })
      );
      const claimOf = (id: string) => claimed.find((d) => d.webhook_id === id)!;
      await store.transaction(async (tx) => {
        await markDelivered(tx, ids[0], T0 + 20);
        await markAttemptFailed(tx, claimOf(ids[1]), { error: "answered HTTP 500" });
        await markAttemptFailed(tx, claimOf(ids[2]), { error: "answered HTTP 410" });
        await markAttemptFailed(tx, claimOf(ids[3]), { retryAt: T0 + 5000, error: "timeout" });
      });
      const failed = await store.read((tx) => listDeliveries(tx, "failed"));
      assert.deepEqual(failed.counts, { pending: 1, failed: 2 });
      assert.deepEqual(
        failed.deliveries,
        [2, 1].map((i) => ({
          webhook_id: ids[i],
          order_id: `o${i}`,
          kind: "order_confirmed",
          status: "failed",
          attempts: 1,
          created_at: new Date(T0 + i).toISOString(),
          next_attempt_at: new Date(T0 + i).toISOString(),
          last_error: i === 2 ? "answered HTTP 410" : "answered HTTP 500",
        })),
      );
      const pending = await store.read((tx) => listDeliveries(tx, "pending"));
      assert.deepEqual(pending.deliveries.map((d) => [d.webhook_id, d.next_attempt_at]), [
        [ids[3], new Date(T0 + 5000).toISOString()],
      ]);
    });
  });

  Deno.test(`retryDelivery() makes a failed delivery due now with its attempts kept, and refuses any other (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
      const [failedId, deliveredId, pendingId] = await enqueue(store, 3);
      const claimed = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 2, now: T0 + 10, leaseMs: 30_000 })
      );
      await store.transaction(async (tx) => {
        await markAttemptFailed(tx, claimed.find((d) => d.webhook_id === failedId)!, {
          error: "answered HTTP 500",
        });
        await markDelivered(tx, deliveredId, T0 + 20);
      });
      let woken = 0;
      store.listen("webhook_deliveries", () => woken++);
      const retry = (id: string, now: number) =>
        store.transaction((tx) => retryDelivery(tx, id, now));
      assert.deepEqual(await retry(deliveredId, T0 + 100), { retried: false, status: "delivered" });
      assert.deepEqual(await retry(pendingId, T0 + 100), { retried: false, status: "pending" });
      assert.deepEqual(await retry("msg_nope", T0 + 100), { retried: false });
      assert.deepEqual(await retry(failedId, T0 + 90_000_000), { retried: true });
      assert.deepEqual(await retry(failedId, T0 + 90_000_000), {
        retried: false,
        status: "pending",
      });
      assert.equal(woken, 1, "the retry's commit wakes the sender, and only it");
      // Due at the retry, not before, and claimed with the same body, its attempts going on.
      const early = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: T0 + 89_999_999, leaseMs: 30_000 })
      );
      assert.deepEqual(early.map((d) => d.webhook_id), [pendingId]);
      const [again] = await store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: T0 + 90_000_000, leaseMs: 30_000 })
      );
      assert.equal(again.webhook_id, failedId);
      assert.equal(again.attempts, 2);
      assert.equal(again.body, deliveryBody(notification("o0", 0)));
      const listed = await store.read((tx) => listDeliveries(tx, "pending"));
      assert.deepEqual(listed.counts, { pending: 2, failed: 0 });
      assert.deepEqual(listed.deliveries.map((d) => d.webhook_id), [pendingId, failedId]);
      assert.equal(listed.deliveries[1].last_error, "answered HTTP 500", "the last error is kept");
    });
  });
}
