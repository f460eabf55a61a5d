/**
 * The system on PostgreSQL (`DATABASE_URL`) against the real broker: the same guarantees as on
 * SQLite, also with two inventory instances competing for one queue and one stock.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { startStack } from "../lib/stack.ts";
import { createDatabase } from "../lib/test_database.ts";
import { POSTGRES_UNAVAILABLE } from "../../shared/_test_stores.ts";

const integration = {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: POSTGRES_UNAVAILABLE !== undefined,
};

Deno.test(
  "orders on PostgreSQL with two inventory instances confirm exactly the stock there is, against the broker",
  integration,
  async () => {
    const database = await createDatabase();
    const stack = await startStack({
      env: { DATABASE_URL: database.url },
      serviceEnv: { inventory: { INVENTORY_STOCK: "burger=10,fries=100" } },
    });
    const second = await stack.startInstance("inventory");
    try {
      const place = async (i: number) => {
        const response = await fetch(`${stack.url("order")}/order`, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": `k${i}` },
          body: JSON.stringify({
            user_id: `u${i}`,
            items: [{ sku: "fries", qty: 1 }, { sku: "burger", qty: 1 }],
          }),
        });
        assert.equal(response.status, 202);
        return (await response.json()).order_id as string;
      };
      const orderIds = await Promise.all(Array.from({ length: 40 }, (_, i) => place(i)));
      // A retry with the same key is the same order, also on PostgreSQL.
      assert.equal(await place(0), orderIds[0]);
      const statuses = await Promise.all(
        orderIds.map((id) =>
          waitFor(`order ${id} to be decided`, async () => {
            const { status } = await (await fetch(`${stack.url("order")}/orders/${id}`)).json();
            return status !== "PENDING" && status;
          }, { timeoutMs: 30_000 })
        ),
      );
      assert.equal(
        statuses.filter((s) => s === "CONFIRMED").length,
        10,
      );
      const stock = await (await fetch(`${second.url}/stock`)).json();
      assert.deepEqual(stock, { burger: 0, fries: 90 });
      const reservers = [stack.services.inventory!, second].map((s) =>
        s.logs.filter((l) => l.msg === "reserved stock" || l.msg === "reservation failed").length
      );
      assert.equal(reservers[0] + reservers[1], 40);
      await waitFor("40 notifications", async () => {
        const counts = await Promise.all(
          orderIds.map(async (id) =>
            (await (await fetch(`${stack.url("notification")}/notifications?order_id=${id}`))
              .json())
              .length
          ),
        );
        return counts.every((n) => n === 1);
      });
    } finally {
      await stack.close();
      await database.drop();
    }
  },
);
