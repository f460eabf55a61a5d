/**
 * `deno task test:backlog`, a scenario of the original Python system: inventory is stopped, orders
 * keep coming in over HTTP, inventory starts again and drains the backlog. The depth of
 * `order-placed` is sampled from the stop until it is empty and drawn as a chart (in the terminal,
 * and as SVG with `--chart`). PASS when every order ends CONFIRMED with one reservation and one
 * notification, the queue is back to 0 and the DLQ is empty.
 * @module
 */
import { sleep, waitFor } from "../lib/async.ts";
import { MENU, menuStock, stockEnv } from "../lib/menu.ts";
import { countEffects } from "../lib/effects.ts";
import { round, tally } from "../lib/format.ts";
import { getStock, type OrderRequest, placeOrder, waitReady } from "../lib/http_probes.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { type ChartPoint, renderSvgChart, renderTerminalChart } from "../lib/chart.ts";
import { deadLetterQueue, EventType, Queue } from "../../shared/topology.ts";

/** Options for {@linkcode runBacklog}. */
export interface BacklogOptions extends ScenarioOptions {
  /** How long inventory stays down, in seconds. @default {60} */
  downSeconds?: number;
  /** Orders placed while it is down, spread evenly over that time. @default {30} */
  orders?: number;
  /** An SVG file to write the depth chart to. @default {undefined: none} */
  chartFile?: string;
}

const USAGE =
  `Usage: deno task test:backlog [--down SECONDS] [--orders N] [--chart FILE.svg] [--json]

  --down SECONDS    how long inventory stays down (default 60)
  --orders N        orders placed over HTTP while it is down, spread over that time (default 30)
  --chart FILE.svg  also write the depth chart as an SVG file
  --json            print one JSON object instead of the steps and the chart`;

/** Milliseconds between depth samples while inventory is down, and while it drains. */
const SAMPLE_MS = { down: 100, draining: 20 };

/** Runs the backlog scenario on a stack of its own. */
export function runBacklog(options: BacklogOptions = {}): Promise<ScenarioResult> {
  const { downSeconds = 60, orders = 30, chartFile, log = console.log } = options;
  if (!(downSeconds > 0) || !Number.isInteger(orders) || orders < 1) {
    throw new RangeError(
      `Cannot run backlog as downSeconds must be positive and orders a positive integer: current values are ${downSeconds} and ${orders}`,
    );
  }
  // Enough of every SKU that no order is rejected for want of stock, however many are placed.
  const stock = stockEnv(menuStock(orders * 2 + 100));
  return runScenario("backlog", options, async (report) => {
    report.step("starting an isolated stack (fresh vhost, temporary data directory, free ports)");
    await withStack({ env: { INVENTORY_STOCK: stock } }, async (stack) => {
      report.step(`stack up in vhost ${stack.vhost.name}`);
      await waitReady(stack);
      const tap = await stack.tools.tap([EventType.InventoryReserved, EventType.InventoryFailed]);
      const stockBefore = await getStock(stack);

      const requests = Array.from({ length: orders }, (_, i) => orderRequest(i));
      const { orderIds, points, atStart, startedAt, listeningAt, drainedAt, decidedAt } =
        await outage(
          stack,
          report,
          { requests, downSeconds },
        );

      const effects = await countEffects(stack, orderIds, { outcomes: tap });
      const stockAfter = await getStock(stack);
      const finalDepth = await stack.tools.queueDepth(Queue.orderPlaced);
      const dlqDepth = await stack.tools.queueDepth(deadLetterQueue(Queue.orderPlaced));

      const peak = points.reduce((best, p) => p.value > best.value ? p : best, points[0]);
      const drainSeconds = drainedAt - startedAt;
      report.figure("orders", orders);
      report.figure("down_s", round(startedAt, 1));
      report.figure("peak_depth", peak.value);
      report.figure("peak_at_s", round(peak.t, 1));
      report.figure("depth_at_start", atStart);
      report.figure("inventory_startup_s", round(listeningAt - startedAt, 2));
      report.figure("drain_s", round(drainSeconds, 2));
      report.figure("drain_rate_msg_per_s", round(atStart / drainSeconds, 1));
      report.figure("all_decided_s", round(decidedAt - startedAt, 2));
      report.figure("samples", points.length);

      const chart = renderTerminalChart(points, {
        title: "order-placed depth (messages ready) while inventory is down and draining",
        xLabel: "s since inventory stopped",
        marks: [{ t: 0, label: "stop" }, { t: startedAt, label: "start" }],
      });
      for (const line of chart.split("\n")) log(line);
      if (chartFile) {
        await Deno.writeTextFile(
          chartFile,
          renderSvgChart(points, {
            title: `order-placed depth: ${orders} orders, inventory down ${round(startedAt, 1)} s`,
            xLabel: "seconds since inventory stopped",
            yLabel: "messages ready in order-placed",
            marks: [{ t: 0, label: "stop" }, { t: startedAt, label: "start" }],
          }),
        );
        report.step(`wrote the chart to ${chartFile}`);
      }

      const statuses = effects.map((e) => e.status);
      report.step(`order statuses: ${tally(statuses)}`);
      report.expect(
        statuses.every((s) => s === "CONFIRMED"),
        `all ${orders} orders CONFIRMED`,
        tally(statuses),
      );
      for (
        const [what, counts] of [
          ["reservation", effects.map((e) => e.reservations)],
          ["notification", effects.map((e) => e.notifications)],
          ["outcome event", effects.map((e) => e.outcomes)],
        ] as const
      ) {
        report.step(`${what}s per order (count×value): ${tally(counts)}`);
        report.expect(counts.every((n) => n === 1), `exactly 1 ${what} per order`, tally(counts));
      }
      const wanted = takenStock(requests);
      const taken = Object.fromEntries(
        Object.keys(wanted).map((sku) => [sku, stockBefore[sku] - stockAfter[sku]]),
      );
      report.expect(
        JSON.stringify(taken) === JSON.stringify(wanted),
        `stock taken ${JSON.stringify(wanted)}`,
        JSON.stringify(taken),
      );
      report.step(`order-placed depth ${finalDepth}, order-placed.dlq depth ${dlqDepth}`);
      report.expect(finalDepth === 0, "order-placed back to 0", `${finalDepth}`);
      report.expect(dlqDepth === 0, "order-placed.dlq empty", `${dlqDepth} messages`);
      report.summary(
        `${orders} orders CONFIRMED with 1 reservation and 1 notification each; peak depth ` +
          `${peak.value}, drained in ${drainSeconds.toFixed(2)} s ` +
          `(${round(atStart / drainSeconds, 1)} msg/s); queue and DLQ empty`,
      );
    });
  });
}

/** What {@linkcode outage} saw. All times are seconds since inventory was stopped. */
interface Outage {
  orderIds: string[];
  points: ChartPoint[];
  /** The depth when inventory was started again. */
  atStart: number;
  startedAt: number;
  drainedAt: number;
  /** When the new inventory listened: its start-up is part of the drain time. */
  listeningAt: number;
  decidedAt: number;
}

/**
 * Stops inventory, places `requests` over `downSeconds`, starts inventory again and waits until
 * every order is decided, sampling the depth of `order-placed` all the while.
 */
async function outage(
  stack: Stack,
  report: Report,
  options: { requests: OrderRequest[]; downSeconds: number },
): Promise<Outage> {
  const { requests, downSeconds } = options;
  const orders = requests.length;
  report.step("stopping inventory (SIGTERM)");
  const sampler = sampleDepth(stack);
  try {
    const code = await stack.stop("inventory");
    report.step(`inventory stopped (exit code ${code}); sampling order-placed from now on`);
    const orderIds = await placeOrdersOverTime(stack, requests, {
      spanMs: downSeconds * 1000,
      since: sampler.began,
      onProgress: (placed) =>
        report.step(`placed ${placed}/${orders} orders, depth ${sampler.latest()}`),
    });
    await pace(sampler.began + downSeconds * 1000);
    const atStart = await waitFor(`all ${orders} orders to wait in order-placed`, async () => {
      const depth = await stack.tools.queueDepth(Queue.orderPlaced);
      return depth >= orders && depth;
    });
    const startedAt = sampler.elapsed();
    report.step(`starting inventory after ${startedAt.toFixed(1)} s down, depth ${atStart}`);
    sampler.draining();
    await stack.start("inventory");
    const listeningAt = sampler.elapsed();
    const drainedAt = await waitFor(
      "order-placed to drain",
      () => sampler.points.find((p) => p.t > startedAt && p.value === 0)?.t,
      { timeoutMs: 60_000 + orders * 100 },
    );
    report.step(`order-placed is empty ${(drainedAt - startedAt).toFixed(2)} s after the start`);
    await waitFor("every order to be decided", async () => {
      const effects = await countEffects(stack, orderIds);
      return effects.every((e) => e.status !== "PENDING" && e.notifications > 0);
    }, { timeoutMs: 30_000, intervalMs: 100 });
    const decidedAt = sampler.elapsed();
    report.step(
      `every order decided and notified ${(decidedAt - startedAt).toFixed(2)} s after the start`,
    );
    // Keep sampling a while so that the chart shows the queue staying empty: at least a few
    // columns of the terminal chart, whose columns are each about 1/64 of the whole time.
    await pace(sampler.began + (drainedAt + Math.max(1, startedAt * 0.08)) * 1000);
    return {
      orderIds,
      points: sampler.points,
      atStart,
      startedAt,
      listeningAt,
      drainedAt,
      decidedAt,
    };
  } finally {
    await sampler.stop();
  }
}

function orderRequest(i: number): OrderRequest {
  const items = [{ sku: MENU[i % MENU.length], qty: 1 + (i % 2) }];
  if (i % 3 === 0) items.push({ sku: MENU[(i + 3) % MENU.length], qty: 1 });
  return { user_id: `student-${i % 7}`, items };
}

function takenStock(requests: OrderRequest[]): Record<string, number> {
  const taken: Record<string, number> = {};
  for (const item of requests.flatMap((r) => r.items)) {
    taken[item.sku] = (taken[item.sku] ?? 0) + item.qty;
  }
  return Object.fromEntries(Object.entries(taken).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Resolves at `time` (a `performance.now()` value). It paces the scenario's own actions, orders
 * spread over the down time and samples, and never stands in for waiting on a condition.
 */
function pace(time: number): Promise<void> {
  return sleep(time - performance.now());
}

/**
 * Places `requests` one by one, the i-th at `since + i × spanMs / n`.
 * @returns the order ids, in order
 */
async function placeOrdersOverTime(
  stack: Stack,
  requests: OrderRequest[],
  options: { spanMs: number; since: number; onProgress: (placed: number) => void },
): Promise<string[]> {
  const { spanMs, since, onProgress } = options;
  const ids: string[] = [];
  const every = Math.max(1, Math.ceil(requests.length / 5));
  for (const [i, request] of requests.entries()) {
    await pace(since + (i * spanMs) / requests.length);
    ids.push(await placeOrder(stack, request));
    if ((i + 1) % every === 0 || i + 1 === requests.length) onProgress(i + 1);
  }
  return ids;
}

interface DepthSampler {
  /** `performance.now()` when sampling began: t = 0. */
  began: number;
  points: ChartPoint[];
  latest(): number | undefined;
  /** Seconds since `began`. */
  elapsed(): number;
  /** Samples faster from now on, to time the drain closely. */
  draining(): void;
  stop(): Promise<ChartPoint[]>;
}

/** Samples the depth of `order-placed` in the background until `stop()`. */
function sampleDepth(stack: Stack): DepthSampler {
  const began = performance.now();
  const points: ChartPoint[] = [];
  let interval = SAMPLE_MS.down;
  let stopped = false;
  const elapsed = () => (performance.now() - began) / 1000;
  async function run(): Promise<void> {
    while (!stopped) {
      const next = performance.now() + interval;
      const t = elapsed();
      try {
        points.push({ t, value: await stack.tools.queueDepth(Queue.orderPlaced) });
      } catch {
        // A sample lost to a reconnect is a gap in the chart, not a failure.
      }
      await pace(next);
    }
  }
  const running = run();
  return {
    began,
    points,
    latest: () => points.at(-1)?.value,
    elapsed,
    draining() {
      interval = SAMPLE_MS.draining;
    },
    async stop() {
      stopped = true;
      await running;
      return points;
    },
  };
}

if (import.meta.main) {
  await runFromCommandLine(
    "backlog",
    (args, log) =>
      runBacklog({ downSeconds: args.down, orders: args.orders, chartFile: args.chart, log }),
    { usage: USAGE, accepts: ["down", "orders", "chart"] },
  );
}
