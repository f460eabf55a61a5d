import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { STORE_KINDS } from "../shared/_test_stores.ts";
import { testContext } from "../shared/_test_context.ts";
import { recordingLogger } from "../shared/_test_log.ts";
import {
  type Event,
  type InventoryOutcome,
  inventoryOutcome,
  ORDER_CANCELLED_REASON,
  ORDER_EXPIRED_REASON,
} from "../shared/events.ts";
import { listNotifications, NOTIFICATION_MIGRATIONS } from "./notifications.ts";
import { handleInventoryOutcome } from "./handle_inventory_outcome.ts";

const ORDER = { order_id: "o1", user_id: "u1", items: [{ sku: "burger", qty: 2 }] };

/**
 * Handles `event` in a transaction of its own; resolves once it committed, with what was logged
 * before and after the handler's after-commit step ran, and what it published.
 */
async function handle(store: Store, event: InventoryOutcome) {
  const { log, lines } = recordingLogger();
  const published: Event[] = [];
  const after = await store.transaction((tx) =>
    handleInventoryOutcome(log)(tx, event, testContext(published))
  );
  const beforeCommit = [...lines];
  after?.();
  return { beforeCommit, lines, published };
}

function notificationsOf(store: Store, orderId = ORDER.order_id) {
  return store.read((tx) => listNotifications(tx, { order_id: orderId }));
}

for (const kind of STORE_KINDS) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("notification", NOTIFICATION_MIGRATIONS, (store) => fn(store));

  Deno.test(`handleInventoryOutcome() records order_confirmed for InventoryReserved, and sends it only after the commit (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { beforeCommit, lines, published } = await handle(store, inventoryOutcome(ORDER));
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

  Deno.test(`handleInventoryOutcome() records order_rejected with the reason for InventoryFailed (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { lines } = await handle(store, inventoryOutcome(ORDER, "not enough stock"));
      const message = "order o1 for u1 rejected: not enough stock";
      assert.deepEqual(lines, [`info ${message}`]);
      assert.deepEqual((await notificationsOf(store)).map((n) => [n.kind, n.message]), [
        ["order_rejected", message],
      ]);
    });
  });

  const calledOff: Array<[string, string]> = [
    [ORDER_CANCELLED_REASON, "skipped failure of an order cancelled before it was reserved"],
    [ORDER_EXPIRED_REASON, "skipped failure of an order that expired before it was reserved"],
  ];
  for (const [reason, line] of calledOff) {
    Deno.test(`handleInventoryOutcome() records nothing for an InventoryFailed '${reason}': its OrderCancelled tells the student (${kind.name})`, async () => {
      await withStore(async (store) => {
        const { lines } = await handle(store, inventoryOutcome(ORDER, reason));
        assert.deepEqual(await notificationsOf(store), []);
        assert.deepEqual(lines, [`info ${line}`]);
      });
    });
  }

  Deno.test(`handleInventoryOutcome() records one outcome per order, whatever comes next (${kind.name})`, async () => {
    await withStore(async (store) => {
      await handle(store, inventoryOutcome(ORDER));
      const again = await handle(store, inventoryOutcome(ORDER));
      const other = await handle(store, inventoryOutcome(ORDER, "not enough stock"));
      for (const { lines } of [again, other]) {
        assert.deepEqual(lines, ["info skipped order that was already notified"]);
      }
      assert.deepEqual((await notificationsOf(store)).map((n) => n.kind), ["order_confirmed"]);
    });
  });

  Deno.test(`handleInventoryOutcome() keeps no notification when its transaction rolls back (${kind.name})`, async () => {
    await withStore(async (store) => {
      const { log, lines } = recordingLogger();
      await assert.rejects(store.transaction(async (tx) => {
        await handleInventoryOutcome(log)(tx, inventoryOutcome(ORDER), testContext());
        throw new Error("Cannot commit");
      }));
      assert.deepEqual(lines, [], "nothing sent for what was rolled back");
      assert.deepEqual(await notificationsOf(store), []);
      await handle(store, inventoryOutcome(ORDER));
      assert.deepEqual((await notificationsOf(store)).map((n) => n.kind), ["order_confirmed"]);
    });
  });
}
