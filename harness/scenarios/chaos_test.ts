/**
 * `deno task test:chaos` for 12 s, with broker outages, and on PostgreSQL with database outages,
 * against the broker.
 */
import assert from "node:assert/strict";
import { postgresUnavailable } from "../../shared/testing/stores.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { plainPassOnly } from "../lib/secure_mode.ts";
import { assertPasses } from "./_testing.ts";
import { runChaos } from "./chaos.ts";

Deno.test(
  "runChaos() passes through kills, forced closes, transient faults and broker outages, against the broker",
  INTEGRATION,
  async () => {
    const result = await assertPasses(
      (log) => runChaos({ seconds: 12, rate: 15, brokerOutage: true, log }),
      [
        "orders_accepted",
        "kills_inventory",
        "outages",
        "retries",
        "timeline",
        "webhook_delivered",
      ],
    );
    assert.equal(result.figures.outages, 2);
    assert.ok(Number(result.figures.webhook_recorded) > 0, "notifications went to the webhook");
    assert.equal(result.figures.webhook_delivered, result.figures.webhook_recorded);
    assert.equal(result.figures.kills_inventory, 2);
    assert.ok(Number(result.figures.expired) > 0, "orders expired while inventory was stopped");
    assert.ok(Number(result.figures.cancelled) > 0, "orders were cancelled");
    assert.ok(Number(result.figures.retries) > 0, "transient faults were injected and retried");
  },
);

Deno.test(
  "runChaos() passes through two database outages on PostgreSQL beside the other faults, with no valid message dead-lettered, against the broker",
  {
    ...INTEGRATION,
    // The database's outages are not the broker users': proved once, in the plain pass.
    ignore: (await postgresUnavailable()) !== undefined ||
      !plainPassOnly("chaos_test, on PostgreSQL"),
  },
  async () => {
    const result = await assertPasses(
      (log) => runChaos({ seconds: 12, rate: 15, databaseOutage: true, log }),
      ["database_outages", "pauses", "resumed_after_s_max", "retries"],
    );
    assert.equal(result.figures.database_outages, 2);
    assert.ok(Number(result.figures.pauses) >= 2, `pauses: ${result.figures.pauses}`);
  },
);
