import assert from "node:assert/strict";
import type { Hono } from "hono";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import {
  type ListedNotification,
  type Notification,
  NOTIFICATION_MIGRATIONS,
  notifyOrder,
  recordNotification,
} from "./notifications.ts";
import {
  claimDeliveries,
  type DeliveryListing,
  listDeliveries,
  markAttemptFailed,
  markDelivered,
} from "./webhook_deliveries.ts";
import { notificationRoutes, type NotificationRoutesOptions } from "./routes.ts";
import { sign } from "hono/jwt";

const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;

const NOTIFICATIONS: Notification[] = [
  notification("o2", "u1", "order_confirmed", "2026-01-01T00:00:02.000Z"),
  notification("o1", "u1", "order_confirmed", "2026-01-01T00:00:01.000Z"),
  notification("o1", "u1", "order_cancelled", "2026-01-01T00:00:03.000Z"),
  notification("o3", "u2", "order_rejected", "2026-01-01T00:00:04.000Z"),
];

function notification(
  orderId: string,
  userId: string,
  kind: Notification["kind"],
  createdAt: string,
): Notification {
  return {
    order_id: orderId,
    user_id: userId,
    kind,
    message: `${kind} ${orderId}`,
    created_at: createdAt,
  };
}

/** Runs `fn` with the routes over a store that holds {@linkcode NOTIFICATIONS}. */
function withRoutes(
  fn: (app: Hono, store: Store) => Promise<void>,
  options: NotificationRoutesOptions = {},
): Promise<void> {
  return sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
    await store.transaction(async (tx) => {
      for (const n of NOTIFICATIONS) assert.ok(await recordNotification(tx, n));
    });
    await fn(notificationRoutes(store, options), store);
  });
}

async function getJson(app: Hono, path: string): Promise<{ status: number; body: unknown }> {
  const response = await app.request(path);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  return { status: response.status, body: await response.json() };
}

Deno.test("notificationRoutes() GET /notifications?order_id= lists the order's notifications, oldest first", async () => {
  await withRoutes(async (app) => {
    assert.deepEqual(await getJson(app, "/notifications?order_id=o1"), {
      status: 200,
      body: [NOTIFICATIONS[1], NOTIFICATIONS[2]],
    });
  });
});

Deno.test("notificationRoutes() GET /notifications?user_id= lists the user's notifications over every order, oldest first", async () => {
  await withRoutes(async (app) => {
    assert.deepEqual(await getJson(app, "/notifications?user_id=u1"), {
      status: 200,
      body: [NOTIFICATIONS[1], NOTIFICATIONS[0], NOTIFICATIONS[2]],
    });
  });
});

Deno.test("notificationRoutes() GET /notifications answers an empty list for an order or user it never told", async () => {
  await withRoutes(async (app) => {
    for (const query of ["order_id=nope", "user_id=nobody", "order_id="]) {
      assert.deepEqual(await getJson(app, `/notifications?${query}`), { status: 200, body: [] });
    }
  });
});

Deno.test("notificationRoutes() GET /notifications without order_id or user_id is a JSON 400 naming the field", async () => {
  await withRoutes(async (app) => {
    const { status, body } = await getJson(app, "/notifications");
    assert.equal(status, 400);
    assert.equal((body as { field: string }).field, "order_id");
    assert.match((body as { error: string }).error, /order_id or user_id is required/);
  });
});

const SECRET = "notification-routes-test-secret-0123456789";
const AUTH = { auth: { jwtSecret: SECRET } };

/** The order ids `GET /notifications<query>` lists for a token of `sub` (none: no token), or the status. */
async function listed(app: Hono, query: string, sub?: string, role?: string): Promise<unknown> {
  const exp = Math.floor(Date.now() / 1000) + 600;
  const headers: Record<string, string> = sub
    ? { authorization: `Bearer ${await sign({ sub, exp, role }, SECRET, "HS256")}` }
    : {};
  const response = await app.request(`/notifications${query}`, { headers });
  const body = await response.json();
  return response.ok ? body.map((n: Notification) => n.order_id) : response.status;
}

Deno.test("notificationRoutes() with auth lists the caller's own, and nothing of another student's", async () => {
  await withRoutes(async (app) => {
    assert.equal(await listed(app, "?user_id=u1"), 401);
    assert.deepEqual(await listed(app, "", "u1"), ["o1", "o2", "o1"]);
    assert.deepEqual(await listed(app, "?user_id=u1", "u1"), ["o1", "o2", "o1"]);
    assert.deepEqual(await listed(app, "?order_id=o1", "u1"), ["o1", "o1"]);
    assert.deepEqual(await listed(app, "?user_id=u2", "u1"), []);
    assert.deepEqual(await listed(app, "?order_id=o3", "u1"), []);
  }, AUTH);
});

Deno.test("notificationRoutes() with auth lists anyone's for an admin", async () => {
  await withRoutes(async (app) => {
    assert.deepEqual(await listed(app, "?user_id=u2", "desk", "admin"), ["o3"]);
    assert.deepEqual(await listed(app, "?order_id=o1", "desk", "admin"), ["o1", "o1"]);
  }, AUTH);
});

Deno.test("notificationRoutes() with a webhook shows each notification's delivery", async () => {
  await sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
    await store.transaction(async (tx) => {
      await notifyOrder(
        tx,
        { kind: "order_confirmed", order: { order_id: "o9", user_id: "u9" } },
        { webhook: true },
      );
      await notifyOrder(
        tx,
        { kind: "order_cancelled", order: { order_id: "o9", user_id: "u9" } },
        { webhook: true },
      );
    });
    const [claimed] = await store.transaction((tx) =>
      claimDeliveries(tx, { limit: 1, now: Date.now(), leaseMs: 30_000 })
    );
    await store.transaction((tx) => markDelivered(tx, claimed.webhook_id, Date.now()));
    const { body } = await getJson(
      notificationRoutes(store, { webhook: true }),
      "/notifications?order_id=o9",
    );
    const deliveries = (body as ListedNotification[]).map((n) => n.delivery);
    assert.equal(deliveries.length, 2);
    assert.deepEqual(deliveries.map((d) => [d?.status, d?.attempts]), [["delivered", 1], [
      "pending",
      0,
    ]]);
    assert.match(deliveries[0]!.webhook_id, /^msg_/);
    assert.ok(!Number.isNaN(Date.parse(deliveries[0]!.delivered_at!)));
    assert.equal(deliveries[1]!.delivered_at, undefined);
    assert.notEqual(deliveries[0]!.webhook_id, deliveries[1]!.webhook_id);
    // Without a webhook configured, the list is as it was.
    const plain = await getJson(notificationRoutes(store), "/notifications?order_id=o9");
    assert.ok((plain.body as ListedNotification[]).every((n) => !("delivery" in n)));
  });
});

/**
 * Runs `fn` with the routes (a webhook configured) over a store holding three deliveries: one
 * failed after two attempts, one delivered, one pending. @returns their ids in that order
 */
function withDeliveries(
  fn: (app: Hono, store: Store, ids: string[]) => Promise<void>,
  options: NotificationRoutesOptions = {},
): Promise<void> {
  return sqlite.with("notification", NOTIFICATION_MIGRATIONS, async (store) => {
    await store.transaction(async (tx) => {
      for (const orderId of ["o1", "o2", "o3"]) {
        await notifyOrder(tx, {
          kind: "order_confirmed",
          order: { order_id: orderId, user_id: "u1" },
        }, { webhook: true });
      }
    });
    const claim = () =>
      store.transaction((tx) =>
        claimDeliveries(tx, { limit: 10, now: Date.now(), leaseMs: 30_000 })
      );
    const byOrder = new Map(
      (await claim()).map((d) => [JSON.parse(d.body).data.order_id as string, d]),
    );
    const [o1, o2, o3] = ["o1", "o2", "o3"].map((id) => byOrder.get(id)!);
    await store.transaction(async (tx) => {
      await markAttemptFailed(tx, o1, { retryAt: Date.now(), error: "answered HTTP 500" });
      await markDelivered(tx, o2.webhook_id, Date.now());
      await markAttemptFailed(tx, o3, { retryAt: Date.now() + 3_600_000, error: "timeout" });
    });
    const [again] = await claim();
    await store.transaction((tx) => markAttemptFailed(tx, again, { error: "answered HTTP 503" }));
    const ids = [o1, o2, o3].map((d) => d.webhook_id);
    await fn(notificationRoutes(store, { webhook: true, ...options }), store, ids);
  });
}

function postRetry(app: Hono, webhookId: string, token?: string): Promise<Response> {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  return Promise.resolve(
    app.request(`/deliveries/${encodeURIComponent(webhookId)}/retry`, { method: "POST", headers }),
  );
}

async function tokenOf(sub: string, role?: string): Promise<string> {
  return await sign({ sub, exp: Math.floor(Date.now() / 1000) + 600, role }, SECRET, "HS256");
}

Deno.test("notificationRoutes() GET /deliveries counts pending and failed and lists those of one status", async () => {
  await withDeliveries(async (app, _store, [failed, , pending]) => {
    const { status, body } = await getJson(app, "/deliveries?status=failed");
    assert.equal(status, 200);
    const listing = body as DeliveryListing;
    assert.deepEqual(listing.counts, { pending: 1, failed: 1 });
    assert.equal(listing.deliveries.length, 1);
    assert.deepEqual(
      { ...listing.deliveries[0], created_at: "", next_attempt_at: "" },
      {
        webhook_id: failed,
        order_id: "o1",
        kind: "order_confirmed",
        status: "failed",
        attempts: 2,
        created_at: "",
        next_attempt_at: "",
        last_error: "answered HTTP 503",
      },
    );
    const pendingList = (await getJson(app, "/deliveries?status=pending")).body as DeliveryListing;
    assert.deepEqual(pendingList.deliveries.map((d) => [d.webhook_id, d.attempts]), [[pending, 1]]);
    for (const query of ["", "?status=delivered", "?status=FAILED"]) {
      const refused = await getJson(app, `/deliveries${query}`);
      assert.equal(refused.status, 400, query);
      assert.equal((refused.body as { field: string }).field, "status");
    }
  });
});

Deno.test("notificationRoutes() POST /deliveries/{id}/retry makes a failed delivery pending and due, wakes the sender, and refuses any other", async () => {
  await withDeliveries(async (app, store, [failed, delivered, pending]) => {
    let woken = 0;
    store.listen("webhook_deliveries", () => woken++);
    const unknown = await postRetry(app, "msg_01JABCDEFGHJKMNPQRSTVWXYZ0");
    assert.equal(unknown.status, 404);
    assert.match((await unknown.json()).error, /no such delivery: msg_01JABCDEFGHJKMNPQRSTVWXYZ0/);
    for (const [id, status] of [[delivered, "delivered"], [pending, "pending"]]) {
      const refused = await postRetry(app, id);
      assert.equal(refused.status, 409);
      assert.deepEqual(await refused.json(), {
        error: `only a failed delivery can be retried: this one is ${status}`,
        status,
      });
    }
    assert.equal(woken, 0);
    const retried = await postRetry(app, failed);
    assert.equal(retried.status, 202);
    assert.deepEqual(await retried.json(), { webhook_id: failed, status: "pending" });
    assert.equal(woken, 1, "the sender is woken at once");
    const listing = await store.read((tx) => listDeliveries(tx, "pending"));
    assert.deepEqual(listing.counts, { pending: 2, failed: 0 });
    const row = listing.deliveries.find((d) => d.webhook_id === failed)!;
    assert.equal(row.attempts, 2, "its attempts are kept");
    assert.ok(Date.parse(row.next_attempt_at) <= Date.now(), "due now");
    // It is the sender's again: claimed with the body every attempt of it carried.
    const claimed = await store.transaction((tx) =>
      claimDeliveries(tx, { limit: 10, now: Date.now(), leaseMs: 30_000 })
    );
    const again = claimed.find((d) => d.webhook_id === failed)!;
    assert.equal(again.attempts, 3);
    assert.equal(JSON.parse(again.body).data.order_id, "o1");
    assert.equal((await postRetry(app, failed)).status, 409, "twice is not retried twice");
  });
});

Deno.test("notificationRoutes() POST /deliveries/{id}/retry without a webhook configured is a JSON 409", async () => {
  await withDeliveries(async (app, _store, [failed]) => {
    const refused = await postRetry(app, failed);
    assert.equal(refused.status, 409);
    assert.match((await refused.json()).error, /no webhook is configured/);
  }, { webhook: false });
});

Deno.test("notificationRoutes() with auth lets only an admin list and retry deliveries", async () => {
  await withDeliveries(async (app, _store, [failed]) => {
    const student = await tokenOf("u1");
    const admin = await tokenOf("desk", "admin");
    const list = (token?: string) =>
      app.request("/deliveries?status=failed", {
        headers: token ? { authorization: `Bearer ${token}` } : {},
      });
    assert.equal((await list()).status, 401);
    const byStudent = await list(student);
    assert.equal(byStudent.status, 403, "a student may not see every student's notifications");
    assert.match((await byStudent.json()).error, /admin role/);
    assert.equal((await list(admin)).status, 200);
    assert.equal((await postRetry(app, failed)).status, 401);
    assert.equal((await postRetry(app, failed, student)).status, 403);
    assert.equal((await postRetry(app, failed, admin)).status, 202);
  }, AUTH);
});
