import assert from "node:assert/strict";
import { lockForTransaction, tryLockForTransaction } from "./store_locks.ts";
import { storeKinds } from "./testing/stores.ts";

const postgres = (await storeKinds()).find((kind) => kind.name === "postgres");

Deno.test("tryLockForTransaction() and lockForTransaction() always take the lock on SQLite", async () => {
  const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;
  await sqlite.with("test", [], async (store) => {
    const taken = await store.transaction(async (tx) => {
      await lockForTransaction(tx, ["b", "a"]);
      return [await tryLockForTransaction(tx, "job"), await tryLockForTransaction(tx, "job")];
    });
    assert.deepEqual(taken, [true, true]);
  });
});

Deno.test({
  name:
    "tryLockForTransaction() is false while another transaction holds the lock, true once it ended (postgres)",
  ignore: !postgres,
  fn: async () => {
    await postgres!.with("test", [], async (store) => {
      const { promise: held, resolve: holding } = Promise.withResolvers<void>();
      const { promise: release, resolve: done } = Promise.withResolvers<void>();
      const holder = store.transaction(async (tx) => {
        assert.equal(await tryLockForTransaction(tx, "job"), true);
        holding();
        await release;
      });
      await held;
      const whileHeld = await store.transaction((tx) => tryLockForTransaction(tx, "job"));
      const otherName = await store.transaction((tx) => tryLockForTransaction(tx, "other job"));
      done();
      await holder;
      const afterwards = await store.transaction((tx) => tryLockForTransaction(tx, "job"));
      assert.deepEqual([whileHeld, otherName, afterwards], [false, true, true]);
    });
  },
});

Deno.test({
  name:
    "tryLockForTransaction() of one service does not hold up another's lock of the same name (postgres)",
  ignore: !postgres,
  fn: async () => {
    await postgres!.with("one", [], async (one) => {
      await postgres!.with("two", [], async (two) => {
        const { promise: held, resolve: holding } = Promise.withResolvers<void>();
        const { promise: release, resolve: done } = Promise.withResolvers<void>();
        const holder = one.transaction(async (tx) => {
          await tryLockForTransaction(tx, "job");
          holding();
          await release;
        });
        await held;
        const other = await two.transaction((tx) => tryLockForTransaction(tx, "job"));
        done();
        await holder;
        assert.equal(other, true);
      });
    });
  },
});

Deno.test({
  name: "lockForTransaction() waits for the transaction that holds one of its locks (postgres)",
  ignore: !postgres,
  fn: async () => {
    await postgres!.with("test", [], async (store) => {
      const order: string[] = [];
      const { promise: held, resolve: holding } = Promise.withResolvers<void>();
      const { promise: release, resolve: done } = Promise.withResolvers<void>();
      const holder = store.transaction(async (tx) => {
        await lockForTransaction(tx, ["order 2"]);
        holding();
        await release;
        order.push("holder ends");
      });
      await held;
      const waiter = store.transaction(async (tx) => {
        await lockForTransaction(tx, ["order 3", "order 2", "order 1", "order 2"]);
        order.push("waiter has its locks");
      });
      // The waiter is blocked on the server until the holder ends: PostgreSQL's own view says so.
      await store.read(async (tx) => {
        while (
          !(await tx.get(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
          ))
        );
      });
      done();
      await Promise.all([holder, waiter]);
      assert.deepEqual(order, ["holder ends", "waiter has its locks"]);
    });
  },
});
