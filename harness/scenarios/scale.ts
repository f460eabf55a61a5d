/**
 * `deno task test:scale`: the system scaled out on one PostgreSQL database and one vhost, with 2
 * order, 3 inventory and 2 notification instances competing for the same queues. A stream of
 * orders goes round-robin to both order APIs, 2 in 5 of them racing for the last items of a scarce
 * SKU, while one instance after another is SIGKILLed and restarted. PASS when every accepted order
 * ends CONFIRMED or REJECTED with exactly one reservation, one outcome event and one notification,
 * each SKU's stock moved by exactly what the confirmed orders took (so every order changed it once
 * or not at all), stock never went negative, and every DLQ is empty.
 *
 * An order instance is killed in the middle of a burst of orders sent to it. The orders it accepted
 * whose `OrderPlaced` was still in the shared outbox must then be published by the other order
 * instance's relay while it is down: the scenario reads the outbox table to show that they were.
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { sleep } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { stockEnv } from "../lib/menu.ts";
import { cleanUpOnInterrupt } from "../lib/interrupt.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { withStack } from "../lib/stack.ts";
import { startWebhookReceiver } from "../lib/webhook_receiver.ts";
import { createDatabase } from "../../shared/testing/stores.ts";
import { EventType } from "../../shared/topology.ts";
import { deadlocks, verifyScale } from "./_scale_checks.ts";
import {
  type Faults,
  INSTANCES,
  type Kill,
  killAndRestartLoop,
  startSlots,
  stopInventoryPastTimeout,
  watchStock,
} from "./_scale_instances.ts";
import {
  createFeed,
  DECISION_TIMEOUT_MS,
  planOrders,
  scaleStock,
  SCARCE_SKU,
  streamPlanned,
} from "./_scale_orders.ts";

/** Options for {@linkcode runScale}. */
export interface ScaleOptions extends ScenarioOptions {
  /** Orders placed over HTTP. @default {300} */
  orders?: number;
  /** How long the stream of orders lasts, in seconds; the kills happen meanwhile. @default {20} */
  seconds?: number;
  /** Stock of the scarce SKU. @default {5/12 of the orders that want it: most of them race for it} */
  scarceStock?: number;
  /** Time from one kill to the next, in milliseconds, give or take a quarter. @default {2000} */
  killIntervalMs?: number;
}

const USAGE = `Usage: deno task test:scale [--orders N] [--seconds S] [--json]

  --orders N   orders placed over both order APIs (10-10000, default 300)
  --seconds S  how long the stream lasts while instances are killed and restarted (default 20)
  --json       print one JSON object instead of the steps`;

/** Runs the scale-out scenario on a stack and a database of its own. */
export function runScale(options: ScaleOptions = {}): Promise<ScenarioResult> {
  const { orders = 300, seconds = 20, killIntervalMs = 2000 } = options;
  if (!Number.isInteger(orders) || orders < 10 || orders > 10_000) {
    throw new RangeError(
      `Cannot run scale as orders must be an integer from 10 to 10000: current value is ${orders}`,
    );
  }
  if (!(seconds > 0 && seconds <= 3600) || !(killIntervalMs >= 100)) {
    throw new RangeError(
      `Cannot run scale as seconds must be 0-3600 and killIntervalMs at least 100: current values are ${seconds} and ${killIntervalMs}`,
    );
  }
  const planned = planOrders(orders);
  const wanted = planned.filter((p) => p.wantsScarce).length;
  const { scarceStock = Math.max(1, Math.round(wanted * 5 / 12)) } = options;
  if (!Number.isInteger(scarceStock) || scarceStock < 1) {
    throw new RangeError(
      `Cannot run scale as scarceStock must be a positive integer: current value is ${scarceStock}`,
    );
  }
  return runScenario("scale", options, async (report) => {
    // The kills' times are counted from here, as the steps' are.
    const began = performance.now();
    report.step("creating a PostgreSQL database for every instance of the three services");
    const database = await createDatabase();
    const db = new pg.Client({ connectionString: database.url });
    // The services are killed around it; a lost connection must fail a query, not the process.
    db.on("error", () => {});
    const forget = cleanUpOnInterrupt(async () => {
      await db.end().catch(() => {});
      await database.drop();
    });
    const receiver = startWebhookReceiver();
    try {
      await db.connect();
      report.step(
        "starting an isolated stack on it (fresh vhost, free ports), " +
          `${INSTANCES.order} order, ${INSTANCES.inventory} inventory and ${INSTANCES.notification} notification instances`,
      );
      await withStack({
        env: { DATABASE_URL: database.url, ORDER_DECISION_TIMEOUT: `${DECISION_TIMEOUT_MS}ms` },
        serviceEnv: {
          inventory: { INVENTORY_STOCK: stockEnv(scaleStock(scarceStock)) },
          notification: receiver.env,
        },
      }, async (stack) => {
        const slots = await startSlots(stack);
        report.step(
          `stack up in vhost ${stack.vhost.name}, database ${
            new URL(database.url).pathname.slice(1)
          }: ${
            Object.values(slots).flat().map((s) => `${s.label} :${s.current!.port}`).join(", ")
          }`,
        );
        const outcomes = await stack.tools.tap([
          EventType.InventoryReserved,
          EventType.InventoryFailed,
        ]);
        const placedTap = await stack.tools.tap([EventType.OrderPlaced]);
        const stock = watchStock(slots.inventory);
        report.step(
          `placing ${orders} orders over ${seconds} s, round-robin over ${slots.order.length} order APIs; ` +
            `${wanted} want 1 ${SCARCE_SKU} (stock ${scarceStock}); a kill every ~${
              round(killIntervalMs / 1000, 1)
            } s`,
        );
        const feed = createFeed(slots.order, planned);
        const streamBegan = performance.now();
        let halted = false;
        const kills: Kill[] = [];
        const faults: Faults = {
          stack,
          report,
          slots,
          feed,
          db,
          kills,
          began,
          killIntervalMs,
          inventoryOutage: false,
        };
        const stopOnError = (error: unknown) => {
          halted = true;
          throw error;
        };
        const [streamed, killed, outage] = await Promise.allSettled([
          streamPlanned(feed, seconds * 1000, () => halted),
          killAndRestartLoop(faults).catch(stopOnError),
          // A third of the way into the stream, so that orders come in while it lasts.
          sleep(seconds * 1000 / 3).then(() => stopInventoryPastTimeout(faults)).catch(stopOnError),
        ]);
        halted = true;
        // Every placement settles on its own (a 202, or a reason), so this never hangs or throws.
        const placements = await Promise.all(feed.placements);
        const streamS = round((performance.now() - streamBegan) / 1000, 1);
        await stock.stop();
        for (const settled of [streamed, killed, outage]) {
          if (settled.status === "rejected") throw settled.reason;
        }
        await verifyScale({
          stack,
          report,
          slots,
          placements,
          kills,
          scarceStock,
          taps: { outcomes, placed: placedTap },
          lowestStock: stock.lowest,
          stockSamples: stock.samples,
          streamS,
          receiver,
        });
        report.figure("postgres_deadlocks", await deadlocks(db));
      });
    } finally {
      await receiver.close();
      forget();
      await db.end().catch(() => {});
      await database.drop();
    }
  });
}

if (import.meta.main) {
  await runFromCommandLine(
    "scale",
    (args, log) => runScale({ orders: args.orders, seconds: args.seconds, log }),
    { usage: USAGE, accepts: ["orders", "seconds"] },
  );
}
