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
import {
  createDatabase,
  type RunningService,
  type ServiceName,
  SERVICES,
  type Stack,
  waitFor,
} from "../lib/stack.ts";
import {
  cleanUpOnInterrupt,
  type Report,
  round,
  runFromCommandLine,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  withStack,
} from "../lib/steps.ts";
import {
  DECISION_TIMEOUT_MS,
  type Kill,
  place,
  type Placement,
  type PlannedOrder,
  planOrders,
  SCARCE_SKU,
  type Slot,
  stockEnv,
  verifyScale,
} from "./_scale_steps.ts";
import { EventType } from "../../shared/topology.ts";

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

/** How many processes of each service run side by side. */
const INSTANCES: Record<ServiceName, number> = { order: 2, inventory: 3, notification: 2 };

/** How long a killed instance stays down before its restart, in milliseconds. */
const DOWN_MS = { min: 300, max: 900 };

/** Orders sent at once to an order instance that is about to be killed. */
const BURST = 20;

/** The order service's outbox on PostgreSQL, in the schema `shared/store.ts` gives the service. */
const ORDER_OUTBOX = "order_service.outbox";

/** Hands out the planned orders: to the stream in turn, and in bursts to an instance about to die. */
interface Feed {
  /** Sends the next planned order to `slot`, or else to the next order instance in turn. */
  send(slot?: Slot): boolean;
  readonly sent: number;
  readonly total: number;
  readonly placements: Promise<Placement>[];
}

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
    try {
      await db.connect();
      report.step(
        "starting an isolated stack on it (fresh vhost, free ports), " +
          `${INSTANCES.order} order, ${INSTANCES.inventory} inventory and ${INSTANCES.notification} notification instances`,
      );
      await withStack({
        env: { DATABASE_URL: database.url, ORDER_DECISION_TIMEOUT: `${DECISION_TIMEOUT_MS}ms` },
        serviceEnv: { inventory: { INVENTORY_STOCK: stockEnv(scarceStock) } },
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
        const chaos: Chaos = {
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
          streamOrders(feed, seconds * 1000, () => halted),
          killAndRestartLoop(chaos).catch(stopOnError),
          // A third of the way into the stream, so that orders come in while it lasts.
          sleep(seconds * 1000 / 3).then(() => stopInventoryPastTimeout(chaos)).catch(stopOnError),
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
        });
        report.figure("postgres_deadlocks", await deadlocks(db));
      });
    } finally {
      forget();
      await db.end().catch(() => {});
      await database.drop();
    }
  });
}

/** The slots of every service: the stack's own instance first, then the extra ones, started now. */
async function startSlots(stack: Stack): Promise<Record<ServiceName, Slot[]>> {
  const extras = SERVICES.flatMap((service) =>
    Array.from({ length: INSTANCES[service] - 1 }, () => ({ service }))
  );
  // Every start settles before a failure is thrown, so that closing the stack stops them all.
  const starts = await Promise.allSettled(
    extras.map(({ service }) => stack.startInstance(service)),
  );
  const failed = starts.find((start) => start.status === "rejected");
  if (failed) throw failed.reason;
  const slots = {} as Record<ServiceName, Slot[]>;
  for (const service of SERVICES) {
    const runs = [
      stack.services[service]!,
      ...starts.flatMap((start, i) =>
        start.status === "fulfilled" && extras[i].service === service ? [start.value] : []
      ),
    ];
    slots[service] = runs.map((run, i) => ({
      service,
      label: `${service}-${i + 1}`,
      primary: i === 0,
      current: run,
      runs: [run],
    }));
  }
  return slots;
}

function createFeed(orderSlots: Slot[], planned: PlannedOrder[]): Feed {
  let turn = 0;
  const placements: Promise<Placement>[] = [];
  return {
    total: planned.length,
    get sent() {
      return placements.length;
    },
    placements,
    send(slot) {
      if (placements.length >= planned.length) return false;
      const target = slot ?? orderSlots[turn++ % orderSlots.length];
      placements.push(place(orderSlots, planned[placements.length], target));
      return true;
    },
  };
}

/** Sends the planned orders evenly over `durationMs`, counting those that bursts took. */
async function streamOrders(feed: Feed, durationMs: number, halted: () => boolean): Promise<void> {
  const began = performance.now();
  while (feed.sent < feed.total && !halted()) {
    const due = Math.ceil(feed.total * Math.min(1, (performance.now() - began) / durationMs));
    while (feed.sent < due) feed.send();
    await sleep(10);
  }
}

interface Chaos {
  stack: Stack;
  report: Report;
  slots: Record<ServiceName, Slot[]>;
  feed: Feed;
  db: pg.Client;
  kills: Kill[];
  /** When the scenario began, from `performance.now()`. */
  began: number;
  killIntervalMs: number;
  /** Set while every inventory instance is stopped on purpose: then no inventory is killed. */
  inventoryOutage: boolean;
}

/**
 * Kills one instance at a time, and restarts it, until every order was sent: first one of each
 * service, then any. One at a time, so each service always has an instance running.
 */
async function killAndRestartLoop(chaos: Chaos): Promise<void> {
  const { slots, feed, kills, killIntervalMs } = chaos;
  const first: ServiceName[] = ["order", "inventory", "notification"];
  let lastKillAt = performance.now();
  while (true) {
    await sleep(
      Math.max(0, lastKillAt + killIntervalMs * (0.75 + Math.random() / 2) - performance.now()),
    );
    if (feed.sent >= feed.total) return;
    lastKillAt = performance.now();
    let service = first[kills.length] ?? pick(SERVICES);
    if (service === "inventory" && chaos.inventoryOutage) service = pick(["order", "notification"]);
    kills.push(await killAndRestart(chaos, pick(slots[service])));
  }
}

/**
 * Stops every inventory instance for longer than the decision timeout, then starts them again:
 * the orders placed meanwhile expire on whichever order instance sweeps first, and their
 * `OrderPlaced` and `OrderCancelled` meet at inventory in either order.
 */
async function stopInventoryPastTimeout(chaos: Chaos): Promise<void> {
  const { stack, report, slots } = chaos;
  const downMs = DECISION_TIMEOUT_MS + 2000;
  chaos.inventoryOutage = true;
  // An inventory instance being killed and restarted just now comes back first.
  await waitFor(
    "every inventory instance to run",
    () => slots.inventory.every((slot) => slot.current),
    { timeoutMs: 30_000 },
  );
  await Promise.all(slots.inventory.map(async (slot) => {
    const victim = slot.current!;
    slot.current = undefined;
    await (slot.primary ? stack.stop("inventory") : victim.stop());
  }));
  report.step(`stopped all ${slots.inventory.length} inventory instances for ${downMs / 1000} s`);
  await sleep(downMs);
  await Promise.all(slots.inventory.map(async (slot) => {
    const restarted = slot.primary
      ? await stack.start("inventory")
      : await stack.startInstance("inventory");
    slot.current = restarted;
    slot.runs.push(restarted);
  }));
  chaos.inventoryOutage = false;
  report.step("started the inventory instances again");
}

async function killAndRestart(chaos: Chaos, slot: Slot): Promise<Kill> {
  const { stack, report, feed, db, began } = chaos;
  const victim = slot.current!;
  let burst = 0;
  if (slot.service === "order") {
    const before = acceptedBy(victim).length;
    while (burst < BURST && feed.send(slot)) burst++;
    // Killed while it takes the burst: orders are committing and its relay is publishing them.
    await waitFor(
      `${slot.label} to accept some of a burst of ${burst} orders`,
      () => acceptedBy(victim).length >= before + Math.min(2, burst),
      { timeoutMs: 10_000, intervalMs: 1 },
    );
  }
  const atMs = Date.now();
  const atS = round((performance.now() - began) / 1000, 1);
  slot.current = undefined;
  const code = slot.primary
    ? await stack.stop(slot.service, "SIGKILL")
    : await victim.stop("SIGKILL");
  const accepted = acceptedBy(victim);
  const left = slot.service === "order" ? await inOutbox(db, accepted) : [];
  const during = burst ? `, amid a burst of ${burst} orders sent to it` : "";
  const outbox = slot.service === "order"
    ? `; ${left.length} of the ${accepted.length} orders it accepted still in the outbox`
    : "";
  report.step(`SIGKILL ${slot.label} (pid ${victim.pid}${during}): exit code ${code}${outbox}`);
  if (left.length > 0) {
    const peer = chaos.slots.order.find((s) => s !== slot)!.label;
    const waited = performance.now();
    await waitFor(
      `${peer} to publish the outbox rows ${slot.label} left`,
      async () => (await inOutbox(db, left)).length === 0,
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    report.step(
      `${peer}'s relay published those ${left.length} (confirmed and deleted) in ${
        round((performance.now() - waited) / 1000, 2)
      } s, with ${slot.label} still down`,
    );
  }
  await sleep(
    Math.max(0, atMs + DOWN_MS.min + Math.random() * (DOWN_MS.max - DOWN_MS.min) - Date.now()),
  );
  const restarted = slot.primary
    ? await stack.start(slot.service)
    : await stack.startInstance(slot.service);
  slot.current = restarted;
  slot.runs.push(restarted);
  const downS = round((Date.now() - atMs) / 1000, 1);
  report.step(`restarted ${slot.label} (pid ${restarted.pid}) after ${downS} s down`);
  return { label: slot.label, service: slot.service, atMs, atS, downS, leftInOutbox: left };
}

/** The order ids an order process logged as accepted (committed with their `OrderPlaced`). */
function acceptedBy(run: RunningService): string[] {
  return run.logs.filter((l) => l.msg === "accepted order").map((l) => String(l.order_id));
}

/** Which of `orderIds` still have their `OrderPlaced` in the outbox: not yet confirmed. */
async function inOutbox(db: pg.Client, orderIds: string[]): Promise<string[]> {
  const { rows } = await db.query<{ correlation_id: string }>(
    `SELECT correlation_id FROM ${ORDER_OUTBOX} WHERE correlation_id = ANY($1)`,
    [orderIds],
  );
  return rows.map((row) => row.correlation_id);
}

/**
 * Deadlocks PostgreSQL detected in the scenario's database: consumers of one queue lock rows in
 * different orders, and each one costs a transaction that has to run again.
 */
async function deadlocks(db: pg.Client): Promise<number> {
  // The statistics of a backend reach the view within a second of its last transaction.
  await sleep(1000);
  const { rows } = await db.query<{ deadlocks: string }>(
    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
  );
  return Number(rows[0]?.deadlocks ?? 0);
}

/**
 * Reads the stock from a running inventory instance every 100 ms, keeping the lowest level seen
 * per SKU: the CHECK constraint would refuse a negative one, and this would show it.
 */
function watchStock(
  inventory: Slot[],
): { lowest: Record<string, number>; readonly samples: number; stop(): Promise<void> } {
  const lowest: Record<string, number> = {};
  let samples = 0;
  let stopped = false;
  async function sample(): Promise<void> {
    while (!stopped) {
      const running = inventory.filter((s) => s.current);
      const url = running.length ? pick(running).current!.url : undefined;
      try {
        const response = url
          ? await fetch(`${url}/stock`, { signal: AbortSignal.timeout(2000) })
          : undefined;
        const stock = await response?.json();
        // A killed instance's port may be another service's by now: only a stock answer counts.
        if (response?.ok && typeof stock?.[SCARCE_SKU] === "number") {
          samples++;
          for (const [sku, qty] of Object.entries(stock as Record<string, number>)) {
            lowest[sku] = Math.min(lowest[sku] ?? qty, qty);
          }
        }
      } catch {
        // The instance was killed under the request; the next sample asks another.
      }
      await sleep(100);
    }
  }
  const running = sample();
  return {
    lowest,
    get samples() {
      return samples;
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

if (import.meta.main) {
  await runFromCommandLine(
    "scale",
    (args, log) => runScale({ orders: args.orders, seconds: args.seconds, log }),
    { usage: USAGE, accepts: ["orders", "seconds"] },
  );
}
