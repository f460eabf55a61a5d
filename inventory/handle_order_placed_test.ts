import assert from "node:assert/strict";
import { storeKinds } from "../shared/testing/stores.ts";
import { testContext } from "../shared/testing/message_context.ts";
import { type Event, orderPlaced } from "../shared/events.ts";
import { createLogger } from "../shared/log.ts";
import { EventType } from "../shared/topology.ts";
import { getReservation, INVENTORY_MIGRATIONS, listStock, lockStock, seedStock } from "./stock.ts";
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
        await store.transaction(async (tx) => {
          await lockStock(tx, ["burger"]);
          await handler(tx, event, testContext(published));
        });
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
      await store.transaction(async (tx) => {
        await lockStock(tx, ["burger"]);
        await handler(tx, event, testContext(published));
      });
      assert.deepEqual(published.map((e) => e.event_type), [outcome]);
    });
  });
}
