/**
 * Retention against the real broker, on SQLite and on PostgreSQL: with windows of a second, the
 * services really delete their inbox rows and idempotency keys, and what comes after the window is
 * still handled safely.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { publishOrderPlaced } from "../lib/broker_probes.ts";
import { getStock, notificationCount, postOrder, readMetric } from "../lib/http_probes.ts";
import { SERVICES } from "../lib/service_process.ts";
import { INTEGRATION, type Stack, withStack } from "../lib/stack.ts";
import { createDatabase, postgresUnavailable } from "../../shared/testing/stores.ts";
import { EventType } from "../../shared/topology.ts";

const BURGER = { user_id: "u1", items: [{ sku: "burger", qty: 1 }] };

/** The rows a service's `/metrics` says retention deleted from `table`. */
function deletedRows(url: string, table: string): Promise<number> {
  return readMetric(url, "campus_food_retention_deleted_rows_total", { table });
}

function post(stack: Stack, key: string): Promise<Response> {
  return postOrder(stack.url("order"), BURGER, { "idempotency-key": key });
}

for (const store of ["sqlite", "postgres"] as const) {
  Deno.test(
    `inbox rows and idempotency keys are deleted after their window, and a late duplicate changes nothing (${store}), against the broker`,
    { ...INTEGRATION, ignore: store === "postgres" && (await postgresUnavailable()) !== undefined },
    async () => {
      const database = store === "postgres" ? await createDatabase() : undefined;
      try {
        await withStack({
          env: {
            INBOX_RETENTION: "1s",
            IDEMPOTENCY_KEY_RETENTION: "1s",
            ...database && { DATABASE_URL: database.url },
          },
        }, async (stack) => {
          const tap = await stack.tools.tap([EventType.OrderPlaced]);
          const first = await post(stack, "key-1");
          assert.equal(first.status, 202);
          const { order_id: orderId } = await first.json();
          await waitFor(
            "the notification",
            async () => await notificationCount(stack, orderId) === 1,
          );
          const stock = await getStock(stack);

          for (const name of SERVICES) {
            await waitFor(
              `${name} to delete its inbox row`,
              async () => await deletedRows(stack.url(name), "inbox") >= 1,
            );
          }
          await waitFor(
            "order to delete the idempotency key",
            async () => await deletedRows(stack.url("order"), "idempotency_keys") >= 1,
          );

          // The key is forgotten: the same request is a new order now.
          const again = await post(stack, "key-1");
          assert.equal(again.status, 202);
          assert.equal(again.headers.get("idempotent-replayed"), null);
          const { order_id: secondId } = await again.json();
          assert.notEqual(secondId, orderId);
          await waitFor(
            "the second notification",
            async () => await notificationCount(stack, secondId) === 1,
          );

          // The inbox forgot the first OrderPlaced; the reservation's key still stops a second effect.
          const [placed] = tap.messages;
          await publishOrderPlaced(stack, placed.body, placed.messageId!);
          await waitFor(
            "inventory to handle the late duplicate as new to its inbox",
            () =>
              stack.services.inventory!.logs.some((line) =>
                line.msg === "skipped order that already has a reservation" &&
                line.order_id === orderId
              ),
          );
          assert.equal((await getStock(stack)).burger, stock.burger - 1);
          assert.equal(await notificationCount(stack, orderId), 1);
          await tap.close();
        });
      } finally {
        await database?.drop();
      }
    },
  );
}
