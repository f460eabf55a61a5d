import assert from "node:assert/strict";
import type { Store, Tx } from "./store.ts";
import { lockForTransaction, tryLockForTransaction } from "./store_locks.ts";
import { type StoreKind, storeKinds } from "./testing/stores.ts";

const postgres = (await storeKinds()).find((kind) => kind.name === "postgres");

/** Declares a test that runs against PostgreSQL, skipped where it does not answer. */
function postgresTest(name: string, fn: (postgres: StoreKind) => Promise<void>): void {
  Deno.test({ name, ignore: !postgres, fn: () => fn(postgres!) });
}

/**
 * Starts a transaction on `store` that runs `lock` and then holds what it took, until the returned
 * function is called, which ends it; resolves once `lock` ran. `beforeEnd` runs inside the
 * transaction, just before it commits.
 */
async function holdInTransaction(
  store: Store,
  lock: (tx: Tx) => Promise<unknown>,
  beforeEnd: () => void = () => {},
): Promise<() => Promise<void>> {
  const { promise: held, resolve: holding } = Promise.withResolvers<void>();
  const { promise: release, resolve: done } = Promise.withResolvers<void>();
  const holder = store.transaction(async (tx) => {
    await lock(tx);
    holding();
    await release;
    beforeEnd();
  });
  // A lock that fails rejects the holder before it ever holds: the test fails rather than waits.
  await Promise.race([held, holder]);
  return async () => {
    done();
    await holder;
  };
}

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

postgresTest(
  "tryLockForTransaction() is false while another transaction holds the lock, true once it ended (postgres)",
  (postgres) =>
    postgres.with("test", [], async (store) => {
      const release = await holdInTransaction(store, async (tx) => {
        assert.equal(await tryLockForTransaction(tx, "job"), true);
      });
      const whileHeld = await store.transaction((tx) => tryLockForTransaction(tx, "job"));
      const otherName = await store.transaction((tx) => tryLockForTransaction(tx, "other job"));
      await release();
      const afterwards = await store.transaction((tx) => tryLockForTransaction(tx, "job"));
      assert.deepEqual([whileHeld, otherName, afterwards], [false, true, true]);
    }),
);

postgresTest(
  "tryLockForTransaction() of one service does not hold up another's lock of the same name (postgres)",
  (postgres) =>
    postgres.with("one", [], (one) =>
      postgres.with("two", [], async (two) => {
        const release = await holdInTransaction(one, (tx) => tryLockForTransaction(tx, "job"));
        const other = await two.transaction((tx) => tryLockForTransaction(tx, "job"));
        await release();
        assert.equal(other, true);
      })),
);

postgresTest(
  "lockForTransaction() waits for the transaction that holds one of its locks (postgres)",
  (postgres) =>
    postgres.with("test", [], async (store) => {
      const order: string[] = [];
      const release = await holdInTransaction(
        store,
        (tx) => lockForTransaction(tx, ["order 2"]),
        () => order.push("holder ends"),
      );
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
      await Promise.all([release(), waiter]);
      assert.deepEqual(order, ["holder ends", "waiter has its locks"]);
    }),
);
