/**
 * `deno task test:idempotency`: the same `OrderPlaced` twice (as the test script of the original
 * Python system does) and 50 times, two different events for one order, and inventory killed with
 * SIGKILL while it holds unacked deliveries. PASS when every order has exactly one reservation, one
 * stock change, one outcome event (on a tap queue) and one notification.
 *
 * Each order buys from a SKU of its own, so that its stock change can be told apart from the
 * others'.
 * @module
 */
import { waitFor, within } from "../lib/async.ts";
import {
  orderPlacedMessage,
  peekQueue,
  publishOrderPlaced,
  waitQueuesEmpty,
} from "../lib/broker_probes.ts";
import { countEffects } from "../lib/effects.ts";
import { tally } from "../lib/format.ts";
import { getStock, waitReady } from "../lib/http_probes.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { type OrderPlaced, orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { EventType, Queue } from "../../shared/topology.ts";

/** Options for {@linkcode runIdempotency}. */
export interface IdempotencyOptions extends ScenarioOptions {
  /** `OrderPlaced` events published while inventory is killed, one order each. @default {300} */
  killBurst?: number;
}

const USAGE = `Usage: deno task test:idempotency [--orders N] [--json]

  --orders N  OrderPlaced events in flight when inventory is killed (10-5000, default 300)
  --json      print one JSON object instead of the steps`;

/** The largest burst: see {@linkcode runIdempotency}. */
const MAX_BURST = 5000;

/** Each order's SKU starts with this much stock; an order takes 1 to 3. */
const STOCK_PER_SKU = 10;

/** Inventory's log lines, one per delivery it handled (not poison). */
const HANDLED = new Set([
  "reserved stock",
  "reservation failed",
  "skipped duplicate",
  "skipped order that already has a reservation",
]);

/** Runs the idempotency scenario on a stack of its own. */
export function runIdempotency(options: IdempotencyOptions = {}): Promise<ScenarioResult> {
  const { killBurst = 300 } = options;
  // Each order's SKU goes into INVENTORY_STOCK, and one environment variable holds at most 128 KiB.
  if (!Number.isInteger(killBurst) || killBurst < 10 || killBurst > MAX_BURST) {
    throw new RangeError(
      `Cannot run idempotency as killBurst must be an integer from 10 to ${MAX_BURST}: current value is ${killBurst}`,
    );
  }
  return runScenario("idempotency", options, async (report) => {
    const twice = handPublished("twice", 1);
    const fifty = handPublished("fifty", 2);
    const secondOrder = handPublished("two-events", 3);
    const burst = Array.from(
      { length: killBurst },
      (_, i) => handPublished(`kill-${i}`, 1 + (i % 3)),
    );
    const all = [twice, fifty, secondOrder, ...burst];
    const stock = all.map((e) => `${e.order.items[0].sku}=${STOCK_PER_SKU}`).join(",");
    report.step("starting an isolated stack (fresh vhost, temporary data directory, free ports)");
    await withStack({ serviceEnv: { inventory: { INVENTORY_STOCK: stock } } }, async (stack) => {
      report.step(`stack up in vhost ${stack.vhost.name}`);
      await waitReady(stack);
      const tap = await stack.tools.tap([EventType.InventoryReserved, EventType.InventoryFailed]);
      report.step("tap queue bound to InventoryReserved and InventoryFailed");

      await publishDuplicates(stack, report, [twice, fifty, secondOrder]);
      const killed = await killMidway(stack, report, burst);
      report.figure("burst_orders", killBurst);
      report.figure("handled_before_kill", killed.handledBefore);
      report.figure("unacked_redelivered", killed.redelivered);
      report.figure("duplicates_absorbed_after_restart", killed.duplicatesAfter);
      report.expect(
        killed.handledBefore > 0 && killed.handledBefore < killBurst,
        `inventory killed after handling some but not all of ${killBurst} events`,
        `${killed.handledBefore} handled`,
      );
      report.expect(
        killed.redelivered > 0,
        "the killed inventory to hold unacked deliveries that the broker redelivers",
        "no redelivered message in order-placed",
      );

      const orderIds = all.map((e) => e.order.order_id);
      report.step(`waiting for a notification for each of ${orderIds.length} orders`);
      await waitFor("a notification and an outcome for every order", async () => {
        const effects = await countEffects(stack, orderIds, { outcomes: tap });
        return effects.every((e) => e.notifications > 0 && e.outcomes > 0);
      }, { timeoutMs: 30_000, intervalMs: 200 });
      // Whatever is still on its way would show as a second effect: let the queues run empty.
      await waitQueuesEmpty(stack, [
        Queue.orderPlaced,
        Queue.inventoryReserved,
        Queue.inventoryFailed,
        Queue.orderConfirmed,
        Queue.orderRejected,
      ]);
      checkEffects(
        report,
        await countEffects(stack, orderIds, { outcomes: tap }),
        await getStock(stack),
        all,
      );
    });
  });
}

/** The shape the original system's scripts publish by hand: no `created_at` or `correlation_id`. */
function handPublished(sku: string, qty: number): OrderPlaced {
  return {
    event_id: newId(),
    event_type: EventType.OrderPlaced,
    order: { order_id: newId(), user_id: `u-${sku}`, items: [{ sku, qty }] },
  };
}

async function publishDuplicates(
  stack: Stack,
  report: Report,
  [twice, fifty, secondOrder]: OrderPlaced[],
): Promise<void> {
  const inventory = stack.services.inventory!;
  report.step(`publishing one OrderPlaced twice, same bytes (order ${twice.order.order_id})`);
  const twiceBody = JSON.stringify(twice);
  for (let i = 0; i < 2; i++) await publishOrderPlaced(stack, twiceBody, twice.event_id);
  report.step(`publishing another 50 times, same bytes (order ${fifty.order.order_id})`);
  const fiftyBody = JSON.stringify(fifty);
  for (let i = 0; i < 50; i++) await publishOrderPlaced(stack, fiftyBody, fifty.event_id);
  const other = orderPlaced({ ...secondOrder.order, created_at: new Date().toISOString() });
  report.step(
    `publishing two different events (${secondOrder.event_id}, ${other.event_id}) for order ${secondOrder.order.order_id}`,
  );
  await publishOrderPlaced(stack, JSON.stringify(secondOrder), secondOrder.event_id);
  await publishOrderPlaced(stack, JSON.stringify(other), other.event_id);
  const ids = new Set([twice.event_id, fifty.event_id, secondOrder.event_id, other.event_id]);
  const handled = await waitFor("inventory to handle all 54 deliveries", () => {
    const lines = inventory.logs.filter((l) => ids.has(l.event_id as string));
    return lines.length >= 54 && lines;
  });
  report.step(
    `inventory handled 54 deliveries: ${tally(handled.map((l) => l.msg as string))}`,
  );
  report.figure("published_duplicates", 54);
}

interface KillOutcome {
  handledBefore: number;
  redelivered: number;
  duplicatesAfter: number;
}

/**
 * Publishes `burst` while inventory runs, SIGKILLs it once it has handled some, and restarts it.
 * Inventory takes up to 100 deliveries at a time (its prefetch), so it holds unacked ones then.
 */
async function killMidway(
  stack: Stack,
  report: Report,
  burst: OrderPlaced[],
): Promise<KillOutcome> {
  const ids = new Set(burst.map((e) => e.event_id));
  const old = stack.services.inventory!;
  const handledBy = (logs: Array<Record<string, unknown>>) =>
    logs.filter((l) => ids.has(l.event_id as string) && HANDLED.has(l.msg as string));
  report.step(
    `publishing ${burst.length} OrderPlaced events (one order each) while inventory runs`,
  );
  // As the original system's scripts publish: the JSON as it is, no correlation id.
  const published = stack.broker.publish(
    burst.map((e) => orderPlacedMessage(JSON.stringify(e), e.event_id)),
  );
  // Inventory handles a few hundred events in well under a second: poll its log every millisecond.
  await waitFor("inventory to handle the first events", () => handledBy(old.logs).length > 0, {
    timeoutMs: 15_000,
    intervalMs: 1,
  });
  const seen = handledBy(old.logs).length;
  const code = await stack.stop("inventory", "SIGKILL");
  await within(published, 30_000, `the broker to confirm ${burst.length} events`);
  const handledBefore = handledBy(old.logs).length;
  report.step(
    `killed inventory with SIGKILL once it logged ${seen} handled (exit code ${code}); ` +
      `its log shows ${handledBefore} of ${burst.length} handled`,
  );
  // The broker returns a dead consumer's unacked deliveries to the queue; wait until it has.
  const depth = await waitFor(
    "the broker to return the killed consumer's deliveries",
    async () => {
      const ready = await stack.tools.queueDepth(Queue.orderPlaced);
      return ready >= burst.length - handledBefore && ready;
    },
  );
  const peeked = await peekQueue(stack, Queue.orderPlaced, burst.length);
  const redelivered = peeked.filter((m) => m.redelivered).length;
  report.step(
    `order-placed holds ${depth} messages, ${redelivered} of them redelivered (held unacked by the killed inventory)`,
  );
  report.step("starting inventory again");
  const restarted = await stack.start("inventory");
  await waitFor(
    `the new inventory to handle all ${depth} messages`,
    () => handledBy(restarted.logs).length >= depth,
    { timeoutMs: 30_000 },
  );
  const after = handledBy(restarted.logs);
  const duplicatesAfter = after.filter((l) => l.msg === "skipped duplicate").length;
  report.step(
    `the new inventory handled ${after.length} deliveries: ${
      tally(after.map((l) => l.msg as string))
    }`,
  );
  return { handledBefore, redelivered, duplicatesAfter };
}

function checkEffects(
  report: Report,
  effects: Awaited<ReturnType<typeof countEffects>>,
  stock: Record<string, number>,
  events: OrderPlaced[],
): void {
  const stockChanges = events.map((e) => {
    const { sku, qty } = e.order.items[0];
    return (STOCK_PER_SKU - (stock[sku] ?? STOCK_PER_SKU)) / qty;
  });
  const rows: Array<[string, number[]]> = [
    ["reservation", effects.map((e) => e.reservations)],
    ["stock change", stockChanges],
    ["outcome event", effects.map((e) => e.outcomes)],
    ["notification", effects.map((e) => e.notifications)],
    ["notification sent", effects.map((e) => e.sent)],
  ];
  for (const [what, counts] of rows) {
    report.step(`${what} per order (count×value): ${tally(counts)}`);
    report.expect(
      counts.every((n) => n === 1),
      `exactly 1 ${what} per order`,
      tally(counts),
    );
  }
  const copies = effects.reduce((sum, e) => sum + e.outcomeCopies - e.outcomes, 0);
  report.step(
    `outcome events published again with the same event_id (absorbed downstream): ${copies}`,
  );
  report.figure("orders", effects.length);
  report.figure("outcome_copies_republished", copies);
  report.summary(
    `${effects.length} orders, each with exactly 1 reservation, 1 stock change, 1 outcome event ` +
      `and 1 notification, after 54 duplicate deliveries and a SIGKILL with unacked deliveries`,
  );
}

if (import.meta.main) {
  await runFromCommandLine(
    "idempotency",
    (args, log) => runIdempotency({ killBurst: args.orders, log }),
    { usage: USAGE, accepts: ["orders"] },
  );
}
