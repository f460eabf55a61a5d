import assert from "node:assert/strict";
import type { Store } from "../shared/store.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import {
  CancelReason,
  type OrderCancelled,
  orderCancelled,
  orderConfirmed,
  orderRejected,
} from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { listNotifications, NOTIFICATION_MIGRATIONS } from "./notifications.ts";
import { handleOrderDecision, type OrderDecision } from "./handle_order_decision.ts";
import { handleOrderCancelled } from "./handle_order_cancelled.ts";

const log = createLogger("notification", { level: "error" });
const onDecision = handleOrderDecision(log);
const onCancelled = handleOrderCancelled(log);
const ORDER = { order_id: "o1", user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

const confirmed = () => orderConfirmed(ORDER);
const rejected = (reason = "not enough stock") => orderRejected(ORDER, reason);
const cancelled = (previousStatus: "PENDING" | "CONFIRMED" = "PENDING") =>
  orderCancelled(ORDER, { reason: CancelReason.cancelled, previousStatus });
const expired = () =>
  orderCancelled(ORDER, { reason: CancelReason.expired, previousStatus: "PENDING" });

/** Handles `events` one transaction each, in order, and lists the order's notification kinds. */
async function notify(store: Store, events: Array<OrderDecision | OrderCancelled>) {
  for (const event of events) {
    await store.transaction((tx) =>
      event.event_type === "OrderCancelled"
        ? handleEvents(onCancelled, tx, [event])
        : handleEvents(onDecision, tx, [event])
    );
  }
  const list = await store.read((tx) => listNotifications(tx, { order_id: ORDER.order_id }));
  return list.map((notification) => notification.kind);
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("notification", NOTIFICATION_MIGRATIONS, (store) => fn(store));
  const cases: Array<[string, () => Array<OrderDecision | OrderCancelled>, string[]]> = [
    ["confirmed, then cancelled: both, in order", () => [confirmed(), cancelled("CONFIRMED")], [
      "order_confirmed",
      "order_cancelled",
    ]],
    [
      "the cancellation of a CONFIRMED order before its OrderConfirmed: both, in order",
      () => [cancelled("CONFIRMED"), confirmed()],
      ["order_confirmed", "order_cancelled"],
    ],
    ["expired, then a late OrderConfirmed: only expired", () => [expired(), confirmed()], [
      "order_expired",
    ]],
    ["cancelled while PENDING, then a late OrderRejected", () => [cancelled(), rejected()], [
      "order_cancelled",
    ]],
    ["the same kind twice, from two events: once", () => [expired(), expired(), cancelled()], [
      "order_expired",
    ]],
    ["rejected, then confirmed: only the first outcome", () => [rejected(), confirmed()], [
      "order_rejected",
    ]],
  ];
  for (const [name, events, kinds] of cases) {
    Deno.test(`handleOrderCancelled() and handleOrderDecision(): ${name} (${kind.name})`, async () => {
      await withStore(async (store) => {
        assert.deepEqual(await notify(store, events()), kinds);
      });
    });
  }

  Deno.test(`handleOrderCancelled() racing handleOrderDecision() on two instances ends with the cancellation (${kind.name})`, async () => {
    await kind.with("notification", NOTIFICATION_MIGRATIONS, async (store, reopen) => {
      const other = await reopen();
      const ids = Array.from({ length: 40 }, (_, i) => `race-${i}`);
      const handle = (on: Store, event: OrderDecision | OrderCancelled) =>
        on.transaction((tx) =>
          event.event_type === "OrderCancelled"
            ? handleEvents(onCancelled, tx, [event])
            : handleEvents(onDecision, tx, [event])
        );
      await Promise.all(ids.flatMap((id) => {
        const order = { ...ORDER, order_id: id };
        return [
          handle(store, orderConfirmed(order)),
          handle(other, orderCancelled(order, { reason: "expired", previousStatus: "PENDING" })),
        ];
      }));
      for (const id of ids) {
        const kinds = (await store.read((tx) => listNotifications(tx, { order_id: id })))
          .map((notification) => notification.kind);
        assert.ok(
          kinds.join() === "order_expired" || kinds.join() === "order_confirmed,order_expired",
          `${id}: ${kinds}`,
        );
      }
    });
  });

  Deno.test(`handleOrderCancelled() says why in the message (${kind.name})`, async () => {
    await withStore(async (store) => {
      await notify(store, [expired()]);
      const [notification] = await store.read((tx) => listNotifications(tx, { user_id: "u1" }));
      assert.equal(
        notification.message,
        "order o1 for u1 expired: the kitchen did not answer in time",
      );
    });
  });

  Deno.test(`NOTIFICATION_MIGRATIONS keep existing notifications and allow a second kind (${kind.name})`, async () => {
    await kind.with(
      "notification",
      NOTIFICATION_MIGRATIONS.slice(0, -1),
      async (old, reopen) => {
        await old.transaction((tx) =>
          tx.run(
            `INSERT INTO notifications (order_id, user_id, kind, message, created_at)
             VALUES ('o1', 'u1', 'order_confirmed', 'order o1 for u1 confirmed', '2026-01-01T00:00:00.000Z')`,
          )
        );
        await old.close();
        const store = await reopen(NOTIFICATION_MIGRATIONS);
        assert.deepEqual(await notify(store, [confirmed(), cancelled("CONFIRMED")]), [
          "order_confirmed",
          "order_cancelled",
        ]);
      },
    );
  });
}
