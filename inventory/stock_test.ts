import assert from "node:assert/strict";
import type { Store, Tx } from "../shared/store.ts";
import type { OrderItem } from "../shared/events.ts";
import { storeKinds } from "../shared/testing/stores.ts";
import {
  type Claim,
  claimReservations,
  failReservations,
  getReservation,
  INVENTORY_MIGRATIONS,
  listStock,
  releaseReservation,
  seedStock,
  startTakingStock,
} from "./stock.ts";

function stockOf(store: Store): Promise<Record<string, number>> {
  return store.read(listStock);
}

/** Takes the stock of `items` in `tx`, as a batch of one order does. */
async function takeStock(tx: Tx, items: OrderItem[]): Promise<string | undefined> {
  const stock = await startTakingStock(tx, items.map((item) => item.sku));
  const reason = stock.take(items);
  await stock.save();
  return reason;
}

/** Takes the stock of `items` in a transaction of their own. */
function take(store: Store, items: OrderItem[]): Promise<string | undefined> {
  return store.transaction((tx) => takeStock(tx, items));
}

/** Claims the reservation of one order, as a batch of one does. */
async function claimReservation(tx: Tx, orderId: string, items: OrderItem[]): Promise<Claim> {
  const [claim] = await claimReservations(tx, [{ order_id: orderId, items }]);
  return claim;
}

for (const kind of await storeKinds()) {
  const withStore = (fn: (store: Store) => Promise<void>) =>
    kind.with("inventory", INVENTORY_MIGRATIONS, (store) => fn(store));
  /** Runs `fn` with a store holding `stock`. */
  const withStock = (stock: Record<string, number>, fn: (store: Store) => Promise<void>) =>
    withStore(async (store) => {
      await seedStock(store, stock);
      await fn(store);
    });

  Deno.test(`takeStock() takes every item and returns undefined (${kind.name})`, async () => {
    await withStock({ burger: 5, fries: 3, soda: 1 }, async (store) => {
      const reason = await take(store, [{ sku: "burger", qty: 2 }, { sku: "fries", qty: 3 }]);
      assert.equal(reason, undefined);
      assert.deepEqual(await stockOf(store), { burger: 3, fries: 0, soda: 1 });
    });
  });

  Deno.test(`takeStock() takes nothing when the second item is unknown (${kind.name})`, async () => {
    await withStock({ burger: 5 }, async (store) => {
      const reason = await take(store, [{ sku: "burger", qty: 1 }, { sku: "tofu", qty: 1 }]);
      assert.ok(reason?.includes('unknown sku "tofu"'), String(reason));
      assert.deepEqual(await stockOf(store), { burger: 5 });
    });
  });

  Deno.test(`takeStock() takes nothing when the second item is short (${kind.name})`, async () => {
    await withStock({ burger: 5, fries: 2 }, async (store) => {
      const reason = await take(store, [{ sku: "burger", qty: 1 }, { sku: "fries", qty: 3 }]);
      assert.ok(reason?.includes('not enough stock for "fries"'), String(reason));
      assert.ok(reason?.includes("wanted 3, have 2"), String(reason));
      assert.deepEqual(await stockOf(store), { burger: 5, fries: 2 });
    });
  });

  Deno.test(`takeStock() sums duplicate SKUs in one order (${kind.name})`, async () => {
    await withStock({ burger: 5 }, async (store) => {
      const short = await take(store, [{ sku: "burger", qty: 3 }, { sku: "burger", qty: 3 }]);
      assert.ok(short?.includes("wanted 6, have 5"), String(short));
      assert.deepEqual(await stockOf(store), { burger: 5 });

      const taken = await take(store, [{ sku: "burger", qty: 2 }, { sku: "burger", qty: 3 }]);
      assert.equal(taken, undefined);
      assert.deepEqual(await stockOf(store), { burger: 0 });
    });
  });

  Deno.test(`takeStock() never takes stock below zero (${kind.name})`, async () => {
    await withStock({ cookie: 3 }, async (store) => {
      const results = await Promise.all(
        Array.from(
          { length: 10 },
          () => take(store, [{ sku: "cookie", qty: 1 }]),
        ),
      );
      assert.equal(results.filter((reason) => reason === undefined).length, 3);
      assert.equal(results.filter((reason) => reason?.includes("not enough stock")).length, 7);
      assert.deepEqual(await stockOf(store), { cookie: 0 });
    });
  });

  Deno.test(`startTakingStock() decides a batch's orders in turn and writes what they took once (${kind.name})`, async () => {
    await withStock({ cookie: 1, soda: 5 }, async (store) => {
      const orders = [
        [{ sku: "cookie", qty: 2 }],
        [{ sku: "soda", qty: 1 }],
        [{ sku: "soda", qty: 1 }, { sku: "cookie", qty: 2 }],
        [{ sku: "cookie", qty: 1 }],
        [{ sku: "soda", qty: 2 }, { sku: "cookie", qty: 1 }],
      ];
      const reasons = await store.transaction(async (tx) => {
        const stock = await startTakingStock(tx, orders.flat().map((item) => item.sku));
        const reasons = orders.map((items) => stock.take(items));
        await stock.save();
        return reasons;
      });
      assert.deepEqual(reasons.map((reason) => reason?.split(":")[0]), [
        'not enough stock for "cookie"',
        undefined,
        'not enough stock for "cookie"',
        undefined,
        'not enough stock for "cookie"',
      ]);
      assert.deepEqual(await stockOf(store), { cookie: 0, soda: 4 });
    });
  });

  Deno.test(`startTakingStock() writes nothing when its transaction rolls back (${kind.name})`, async () => {
    await withStock({ burger: 2 }, async (store) => {
      await assert.rejects(store.transaction(async (tx) => {
        assert.equal(await takeStock(tx, [{ sku: "burger", qty: 2 }]), undefined);
        throw new Error("crash before commit");
      }));
      assert.deepEqual(await stockOf(store), { burger: 2 });
    });
  });

  Deno.test(`takeStock() can take the last item exactly (${kind.name})`, async () => {
    await withStock({ pizza: 1 }, async (store) => {
      assert.equal(
        await take(store, [{ sku: "pizza", qty: 1 }]),
        undefined,
      );
      const reason = await take(store, [{ sku: "pizza", qty: 1 }]);
      assert.ok(reason?.includes("wanted 1, have 0"), String(reason));
      assert.deepEqual(await stockOf(store), { pizza: 0 });
    });
  });

  Deno.test(`claimReservations() claims the first time and finds a duplicate after (${kind.name})`, async () => {
    await withStore(async (store) => {
      const items = [{ sku: "burger", qty: 1 }];
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o1", items)), "claimed");
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o1", items)), "duplicate");
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o2", items)), "claimed");
      const reservation = await store.read((tx) => getReservation(tx, "o1"));
      assert.deepEqual(reservation, { order_id: "o1", status: "RESERVED", items });
    });
  });

  Deno.test(`claimReservations() of a batch claims each new order once, in one statement (${kind.name})`, async () => {
    await withStore(async (store) => {
      const items = [{ sku: "burger", qty: 1 }];
      await store.transaction((tx) => claimReservation(tx, "o0", items));
      await store.transaction((tx) => releaseReservation(tx, "o3", items));
      const orderIds = ["o1", "o0", "o2", "o1", "o3"];
      const claims = await store.transaction((tx) =>
        claimReservations(tx, orderIds.map((orderId) => ({ order_id: orderId, items })))
      );
      assert.deepEqual(claims, ["claimed", "duplicate", "claimed", "duplicate", "cancelled"]);
      const statuses = await store.read((tx) =>
        Promise.all(orderIds.map(async (orderId) => (await getReservation(tx, orderId))?.status))
      );
      assert.deepEqual(statuses, ["RESERVED", "RESERVED", "RESERVED", "RESERVED", "FAILED"]);
    });
  });

  Deno.test(`claimReservation() is undone when its transaction rolls back (${kind.name})`, async () => {
    await withStore(async (store) => {
      const items = [{ sku: "burger", qty: 1 }];
      await assert.rejects(store.transaction(async (tx) => {
        await claimReservation(tx, "o1", items);
        throw new Error("crash before commit");
      }));
      assert.equal(await store.read((tx) => getReservation(tx, "o1")), undefined);
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o1", items)), "claimed");
    });
  });

  Deno.test(`failReservations() records each reason on its claimed reservation (${kind.name})`, async () => {
    await withStore(async (store) => {
      const items = [{ sku: "tofu", qty: 1 }];
      await store.transaction(async (tx) => {
        await claimReservations(tx, ["o1", "o2", "o3"].map((order_id) => ({ order_id, items })));
        await failReservations(tx, [
          { order_id: "o1", reason: 'unknown sku "tofu"' },
          { order_id: "o3", reason: "simulated failure" },
        ]);
      });
      const reservations = await store.read((tx) =>
        Promise.all(["o1", "o2", "o3"].map((orderId) => getReservation(tx, orderId)))
      );
      assert.deepEqual(reservations.map((r) => [r?.status, r?.reason]), [
        ["FAILED", 'unknown sku "tofu"'],
        ["RESERVED", undefined],
        ["FAILED", "simulated failure"],
      ]);
    });
  });

  Deno.test(`releaseReservation() puts a RESERVED order's stock back once (${kind.name})`, async () => {
    await withStock({ burger: 5, fries: 5 }, async (store) => {
      const items = [{ sku: "fries", qty: 2 }, { sku: "burger", qty: 1 }, {
        sku: "burger",
        qty: 1,
      }];
      await store.transaction(async (tx) => {
        await claimReservation(tx, "o1", items);
        assert.equal(await takeStock(tx, items), undefined);
      });
      assert.deepEqual(await stockOf(store), { burger: 3, fries: 3 });
      const release = () => store.transaction((tx) => releaseReservation(tx, "o1", items));
      assert.equal(await release(), "released");
      assert.deepEqual(await stockOf(store), { burger: 5, fries: 5 });
      assert.equal((await store.read((tx) => getReservation(tx, "o1")))?.status, "RELEASED");
      assert.equal(await release(), "none");
      assert.deepEqual(await stockOf(store), { burger: 5, fries: 5 });
    });
  });

  Deno.test(`releaseReservation() of a FAILED reservation gives nothing back (${kind.name})`, async () => {
    await withStock({ burger: 1 }, async (store) => {
      const items = [{ sku: "burger", qty: 2 }];
      await store.transaction(async (tx) => {
        await claimReservation(tx, "o1", items);
        await failReservations(tx, [{ order_id: "o1", reason: (await takeStock(tx, items))! }]);
      });
      assert.equal(await store.transaction((tx) => releaseReservation(tx, "o1", items)), "none");
      assert.deepEqual(await stockOf(store), { burger: 1 });
      assert.equal((await store.read((tx) => getReservation(tx, "o1")))?.status, "FAILED");
    });
  });

  Deno.test(`releaseReservation() before the claim makes the claim find the cancellation (${kind.name})`, async () => {
    await withStore(async (store) => {
      const items = [{ sku: "burger", qty: 1 }];
      assert.equal(
        await store.transaction((tx) => releaseReservation(tx, "o1", items)),
        "remembered",
      );
      assert.deepEqual(await store.read((tx) => getReservation(tx, "o1")), {
        order_id: "o1",
        status: "FAILED",
        reason: "order cancelled",
        items,
      });
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o1", items)), "cancelled");
      assert.equal(await store.transaction((tx) => claimReservation(tx, "o1", items)), "duplicate");
      assert.equal(await store.transaction((tx) => releaseReservation(tx, "o1", items)), "none");
    });
  });

  Deno.test(`seedStock() adds new SKUs without overwriting existing levels (${kind.name})`, async () => {
    await withStock({ burger: 10, fries: 10 }, async (store) => {
      await take(store, [{ sku: "burger", qty: 4 }]);
      await seedStock(store, { burger: 500, fries: 500, soda: 7 });
      assert.deepEqual(await stockOf(store), { burger: 6, fries: 10, soda: 7 });
    });
  });

  Deno.test(`seedStock() with an empty map changes nothing (${kind.name})`, async () => {
    await withStock({ salad: 2 }, async (store) => {
      await seedStock(store, {});
      assert.deepEqual(await stockOf(store), { salad: 2 });
    });
  });

  Deno.test(`INVENTORY_MIGRATIONS keep a negative stock level out of the table (${kind.name})`, async () => {
    await withStock({ coffee: 1 }, async (store) => {
      await assert.rejects(
        store.transaction((tx) => tx.run("UPDATE stock SET qty = qty - 2 WHERE sku = 'coffee'")),
        /CHECK|check constraint/,
      );
      assert.deepEqual(await stockOf(store), { coffee: 1 });
    });
  });
}
