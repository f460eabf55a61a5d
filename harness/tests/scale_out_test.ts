/**
 * The system on PostgreSQL (`DATABASE_URL`) against the real broker: the same guarantees as on
 * SQLite, also with two inventory instances competing for one queue and one stock.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { getStock, notificationCount, postOrder, waitDecided } from "../lib/http_probes.ts";
import { postgresTest } from "../lib/on_postgres.ts";
import { withStack } from "../lib/stack.ts";

postgresTest(
  "orders on PostgreSQL with two inventory instances confirm exactly the stock there is, against the broker",
  async (database) => {
    await withStack({
      env: { DATABASE_URL: database.url },
      serviceEnv: { inventory: { INVENTORY_STOCK: "burger=10,fries=100" } },
    }, async (stack) => {
      const second = await stack.startInstance("inventory");
      const place = async (i: number) => {
        const response = await postOrder(stack.url("order"), {
          user_id: `u${i}`,
          items: [{ sku: "fries", qty: 1 }, { sku: "burger", qty: 1 }],
        }, { "idempotency-key": `k${i}` });
        assert.equal(response.status, 202);
        return (await response.json()).order_id as string;
      };
      const orderIds = await Promise.all(Array.from({ length: 40 }, (_, i) => place(i)));
      // A retry with the same key is the same order, also on PostgreSQL.
      assert.equal(await place(0), orderIds[0]);
      const statuses = await Promise.all(
        orderIds.map((id) => waitDecided(stack, id, { timeoutMs: 30_000 })),
      );
      assert.equal(statuses.filter((s) => s === "CONFIRMED").length, 10);
      assert.deepEqual(await getStock(stack), { burger: 0, fries: 90 });
      const reservers = [stack.services.inventory!, second].map((s) =>
        s.logs.filter((l) => l.msg === "reserved stock" || l.msg === "reservation failed").length
      );
      assert.equal(reservers[0] + reservers[1], 40);
      await waitFor("40 notifications", async () => {
        const counts = await Promise.all(orderIds.map((id) => notificationCount(stack, id)));
        return counts.every((n) => n === 1);
      });
    });
  },
);
