import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import { recordingLogger } from "../shared/testing/recording_logger.ts";
import { type Event, orderConfirmed, orderRejected } from "../shared/events.ts";
import { listNotifications, NOTIFICATION_MIGRATIONS } from "./notifications.ts";
import { handleOrderDecision, type OrderDecision } from "./handle_order_decision.ts";

const ORDER = { order_id: "o1", user_id: "u1", items: [{ sku: "burger", qty: 2 }] };

/**
 * Handles `event` in a transaction of its own; resolves once it committed, with what was logged
 * before and after the handler's after-commit step ran, and what it published.
 */
async function handle(store: Store, event: OrderDecision) {
  const { log, lines } = recordingLogger();
  const published: Event[] = [];
  const after = await store.transaction((tx) =>
    handleEvents(handleOrderDecision(log), tx, [event], published)
  );
  const beforeCommit = [...lines];
  after();
  return { beforeCommit, lines, published };
}

function notificationsOf(store: Store, orderId = ORDER.order_id) {
  return store.read((tx) => listNotifications(tx, { order_id: orderId }));
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("notification", NOTIFICATION_MIGRATIONS, (store) => fn(store));

  Deno.test(`handleOrderDecision() records order_confirmed for OrderConfirmed, and sends it only after the commit (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { beforeCommit, lines, published } = await handle(store, orderConfirmed(ORDER));
      const message = "order o1 for u1 confirmed: 2× burger";
      assert.deepEqual(beforeCommit, []);
      assert.deepEqual(lines, [`info ${message}`]);
      assert.deepEqual(published, []);
      const [notification, ...rest] = await notificationsOf(store);
      assert.deepEqual(rest, []);
      assert.deepEqual(
        { ...notification, created_at: undefined },
        { order_id: "o1", user_id: "u1", kind: "order_confirmed", message, created_at: undefined },
      );
      assert.ok(!Number.isNaN(Date.parse(notification.created_at)));
    });
  });

  Deno.test(`handleOrderDecision() records order_rejected with the reason for OrderRejected (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { lines } = await handle(store, orderRejected(ORDER, "not enough stock"));
      const message = "order o1 for u1 rejected: not enough stock";
      assert.deepEqual(lines, [`info ${message}`]);
      assert.deepEqual((await notificationsOf(store)).map((n) => [n.kind, n.message]), [
        ["order_rejected", message],
      ]);
    });
  });

  Deno.test(`handleOrderDecision() records one decision per order, whatever comes next (${kind.name})`, async () => {
    await withStore(async (store) => {
      await handle(store, orderConfirmed(ORDER));
      const again = await handle(store, orderConfirmed(ORDER));
      const other = await handle(store, orderRejected(ORDER, "not enough stock"));
      for (const { lines } of [again, other]) {
        assert.deepEqual(lines, ["info skipped order that was already notified"]);
      }
      assert.deepEqual((await notificationsOf(store)).map((n) => n.kind), ["order_confirmed"]);
    });
  });

  Deno.test(`handleOrderDecision() keeps no notification when its transaction rolls back (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { log, lines } = recordingLogger();
      await assert.rejects(store.transaction(async (tx) => {
        await handleEvents(handleOrderDecision(log), tx, [orderConfirmed(ORDER)]);
        throw new Error("Cannot commit");
      }));
      assert.deepEqual(lines, [], "nothing sent for what was rolled back");
      assert.deepEqual(await notificationsOf(store), []);
      await handle(store, orderConfirmed(ORDER));
      assert.deepEqual((await notificationsOf(store)).map((n) => n.kind), ["order_confirmed"]);
    });
  });

  Deno.test(`handleOrderDecision() tells a batch's orders once each, weighing a second decision about one after the first (${kind.name})`, async () => {
    await withStore(async (store) => {
      const order = (orderId: string) => ({ ...ORDER, order_id: orderId });
      await handle(store, orderRejected(order("o3"), "not enough stock"));
      const { log, lines } = recordingLogger();
      const after = await store.transaction((tx) =>
        handleEvents(handleOrderDecision(log), tx, [
          orderConfirmed(order("o1")),
          orderRejected(order("o2"), "not enough stock"),
          orderRejected(order("o1"), "not enough stock"),
          orderConfirmed(order("o3")),
          orderConfirmed(order("o1")),
        ])
      );
      after();
      assert.deepEqual(lines.map((line) => line.split(":")[0]), [
        "info order o1 for u1 confirmed",
        "info order o2 for u1 rejected",
        "info skipped order that was already notified",
        "info skipped order that was already notified",
        "info skipped order that was already notified",
      ]);
      const kinds = await Promise.all(
        ["o1", "o2", "o3"].map(async (id) => (await notificationsOf(store, id)).map((n) => n.kind)),
      );
      assert.deepEqual(kinds, [["order_confirmed"], ["order_rejected"], ["order_rejected"]]);
    });
  });
}
