import assert from "node:assert/strict";
import { storeKinds } from "../shared/testing/stores.ts";
import { handleEvents } from "../shared/testing/message_context.ts";
import { type Event, orderPlaced } from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { EventType } from "../shared/topology.ts";
import { getReservation, INVENTORY_MIGRATIONS, listStock, seedStock } from "./stock.ts";
import { handleOrderPlaced } from "./handle_order_placed.ts";

const log = createLogger("inventory", { level: "error" });
const decideBy = "2026-01-01T12:02:00.000Z";
const items = [{ sku: "burger", qty: 2 }];
const event = orderPlaced({
  order_id: "o1",
  user_id: "u1",
  items,
  created_at: "2026-01-01T12:00:00.000Z",
  decide_by: decideBy,
});

for (const kind of await storeKinds()) {
  for (
    const [when, now, outcome, stock] of [
      ["before", Date.parse(decideBy) - 1, EventType.InventoryReserved, 1],
      ["after", Date.parse(decideBy) + 1, EventType.InventoryFailed, 3],
    ] as const
  ) {
    Deno.test(`handleOrderPlaced() ${when} the order's decide_by gives ${outcome} (${kind.name})`, async () => {
      await kind.with("inventory", INVENTORY_MIGRATIONS, async (store) => {
        await seedStock(store, { burger: 3 });
        const handler = handleOrderPlaced({ log, now: () => now });
        const published: Event[] = [];
        await store.transaction((tx) => handleEvents(handler, tx, [event], published));
        assert.deepEqual(published.map((e) => [e.event_type, "reason" in e ? e.reason : ""]), [
          [outcome, outcome === EventType.InventoryFailed ? "order expired" : ""],
        ]);
        assert.deepEqual(await store.read(listStock), { burger: stock });
        const reservation = await store.read((tx) => getReservation(tx, "o1"));
        assert.equal(reservation?.status, when === "before" ? "RESERVED" : "FAILED");
      });
    });
  }
}

for (
  const [skew, outcome] of [
    [60_000, EventType.InventoryReserved],
    [5 * 60_000 + 1, EventType.InventoryFailed],
  ] as const
) {
  Deno.test(`handleOrderPlaced() with a 5 min skew tolerance, ${skew} ms past decide_by gives ${outcome}`, async () => {
    const [sqlite] = await storeKinds();
    await sqlite.with("inventory", INVENTORY_MIGRATIONS, async (store) => {
      await seedStock(store, { burger: 3 });
      const handler = handleOrderPlaced({
        log,
        clockSkewToleranceMs: 5 * 60_000,
        now: () => Date.parse(decideBy) + skew,
      });
      const published: Event[] = [];
      await store.transaction((tx) => handleEvents(handler, tx, [event], published));
      assert.deepEqual(published.map((e) => e.event_type), [outcome]);
    });
  });
}

for (const kind of await storeKinds()) {
  Deno.test(`handleOrderPlaced() decides a batch's orders in the order they came, against the stock left (${kind.name})`, async () => {
    await kind.with("inventory", INVENTORY_MIGRATIONS, async (store) => {
      await seedStock(store, { burger: 3, fries: 1 });
      const placed = (orderId: string, orderItems: Array<{ sku: string; qty: number }>) =>
        orderPlaced({
          order_id: orderId,
          user_id: "u1",
          items: orderItems,
          created_at: "2026-01-01T12:00:00.000Z",
          decide_by: decideBy,
        });
      const batch = [
        placed("o1", [{ sku: "burger", qty: 2 }]),
        placed("o2", [{ sku: "burger", qty: 2 }]),
        placed("o3", [{ sku: "fries", qty: 1 }, { sku: "burger", qty: 1 }]),
        placed("o1", [{ sku: "burger", qty: 2 }]),
        placed("o4", [{ sku: "tofu", qty: 1 }]),
        placed("o5", [{ sku: "fries", qty: 1 }]),
      ];
      const handler = handleOrderPlaced({ log, now: () => Date.parse(decideBy) - 1 });
      const published: Event[] = [];
      await store.transaction((tx) => handleEvents(handler, tx, batch, published));
      assert.deepEqual(
        published.map((
          e,
        ) => [
          (e as { order_id: string }).order_id,
          "reason" in e ? e.reason.split(":")[0] : "reserved",
        ]),
        [
          ["o1", "reserved"],
          ["o2", 'not enough stock for "burger"'],
          ["o3", "reserved"],
          ["o4", 'unknown sku "tofu"'],
          ["o5", 'not enough stock for "fries"'],
        ],
      );
      assert.deepEqual(await store.read(listStock), { burger: 0, fries: 0 });
      const statuses = await store.read((tx) =>
        Promise.all(
          ["o1", "o2", "o3", "o4", "o5"].map(async (id) => (await getReservation(tx, id))?.status),
        )
      );
      assert.deepEqual(statuses, ["RESERVED", "FAILED", "RESERVED", "FAILED", "FAILED"]);
    });
  });
}
