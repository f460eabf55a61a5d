/**
 * `deno task test:scale` with 100 orders over 8 s, on PostgreSQL, against the broker.
 */
import assert from "node:assert/strict";
import { postgresUnavailable } from "../../shared/testing/stores.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses } from "./_testing.ts";
import { runScale } from "./scale.ts";

Deno.test(
  "runScale() passes with 2 order, 3 inventory and 2 notification instances on PostgreSQL under SIGKILLs, against the broker",
  { ...INTEGRATION, ignore: (await postgresUnavailable()) !== undefined },
  async () => {
    const result = await assertPasses(
      (log) => runScale({ orders: 100, seconds: 8, killIntervalMs: 1500, log }),
      [
        "accepted_per_order_instance",
        "handled_per_inventory_instance",
        "notified_per_notification_instance",
        "kill_timeline",
        "outbox_rows_left_by_killed_order",
        "webhook_delivered",
      ],
    );
    assert.equal(result.figures.accepted, 100);
    assert.ok(Number(result.figures.webhook_recorded) >= 100, "every order's student was told");
    assert.equal(result.figures.webhook_delivered, result.figures.webhook_recorded);
    assert.equal(result.figures.instances, "2 order, 3 inventory, 2 notification");
    // The first kill is always an order instance's, in the middle of a burst of orders.
    assert.ok(Number(result.figures.kills) >= 2, `kills: ${result.figures.kill_timeline}`);
    assert.match(String(result.figures.kill_timeline), /^[\d.]+s order-\d/);
    assert.ok(Number(result.figures.expired) > 0, "orders expired while inventory was stopped");
  },
);
