/**
 * `deno task bench`: what this machine can do with every durability setting on. Each measurement
 * runs on an isolated stack of its own (fresh vhost, temporary data directory or PostgreSQL
 * database, the services as child processes):
 *
 * 1. the broker's ceilings, no database: one consume → publish-with-confirm → ack hop, and a bare
 *    pipeline of the hops an order takes (`_ceilings.ts`);
 * 2. the drain of a backlog of `OrderPlaced` by inventory, and its ratio to the hop's ceiling;
 * 3. orders end to end over HTTP at a given concurrency, and its ratio to the pipeline's ceiling;
 * 4. the latency of each order at a steady rate;
 * 5. the peak memory of each service, and its memory when idle beside a bare Deno process;
 * 6. the webhook sender's drain of pending deliveries to a local receiver, and the price of the
 *    extra hop: (3) and (4) again with notification delivering to a local verifying receiver,
 *    timed up to the delivery;
 * 7. with `--curve`, the latency curve: the offered rate swept up to saturation (`_curve.ts`).
 *
 * Every run that places orders also reports the CPU one order cost each service and the broker.
 * It prints the figures beside the targets the system is held to (`TARGETS`), or one JSON
 * object with `--json`; `--report <file>` also writes them as a dated markdown section, the one
 * `docs/performance.md` shows. It is not a test: a slow machine gets slow figures, not a failure.
 * @module
 */
import { readCommandLine, runToolFromCommandLine, toolOptions } from "../lib/command_line.ts";
import { measureDrain, measureEndToEnd, measureLatency } from "./_measure.ts";
import { measureCeiling, measureEndToEndCeiling } from "./_ceilings.ts";
import { measureCurve } from "./_curve.ts";
import { renderCurveChart } from "./_curve_report.ts";
import { IDLE_SETTLE_SECONDS, measureIdle } from "./_idle.ts";
import { measureWebhook } from "./_webhook.ts";
import { startWebhookReceiver } from "../lib/webhook_receiver.ts";
import { type BenchConfig, type MemoryPeaks, retentionEnv, type StoreKind } from "./_stack.ts";
import { describeMachine, loadAverage } from "./_stats.ts";
import {
  type BenchReport,
  checkTargets,
  formatMarkdownReport,
  formatReport,
  type ScaleRow,
} from "./_report.ts";
import type { WebhookHop } from "./_report.ts";
import { round } from "../lib/format.ts";
import { parseDuration } from "../../shared/config.ts";
import { type Cluster, RabbitMqNotInstalledError, startCluster } from "../lib/rabbitmq_cluster.ts";

/** The measurements `--only` can pick. */
export const SECTIONS = ["ceiling", "drain", "e2e", "latency", "idle", "webhook", "curve"] as const;
export type Section = typeof SECTIONS[number];

/** The measurements of a run that picks none: all but the curve, which `--curve` adds. */
export const DEFAULT_SECTIONS: readonly Section[] = SECTIONS.filter((s) => s !== "curve");

/** Options for {@linkcode runBench}. */
export interface BenchOptions {
  /** Messages in the ceiling's and the drain's backlog. @default {20000} */
  backlog?: number;
  /** Orders placed end to end. @default {5000} */
  orders?: number;
  /** Requests in flight end to end. @default {50} */
  concurrency?: number;
  /** Orders per second of the latency run. @default {200} */
  rate?: number;
  /** Length of the latency run, in seconds. @default {20} */
  seconds?: number;
  /**
   * The store of the measured configurations. With `postgres`, SQLite with one inventory is
   * measured too, first, so that the two print side by side. @default {"sqlite"}
   */
  store?: StoreKind;
  /** Inventory instances; each count is a configuration of its own. @default {[1]} */
  instances?: number[];
  /**
   * Also measure drain and end to end on a private three-node RabbitMQ cluster started for the
   * run, beside the single node: the price of replicating every quorum queue. @default {false}
   */
  cluster?: boolean;
  /**
   * `INBOX_RETENTION` and `IDEMPOTENCY_KEY_RETENTION` of the services. A window of seconds has
   * retention delete rows throughout the run: what the cleanup costs. @default {the services' own}
   */
  retention?: string;
  /** Seconds each process sits idle before its idle memory is read. @default {IDLE_SETTLE_SECONDS} */
  idleSeconds?: number;
  /** The measurements to run. @default {DEFAULT_SECTIONS} */
  only?: readonly Section[];
  /**
   * The curve's offered rates, orders/s, swept in this order until one is not held.
   * @default {DEFAULT_CURVE_RATES and on until saturation}
   */
  rates?: number[];
  /** Seconds each rate of the curve is sent. @default {5} */
  stepSeconds?: number;
  /** Receives a line per step. @default {no output} */
  log?: (line: string) => void;
  /** The command line shown in the report. @default {"deno task bench"} */
  command?: string;
}

/**
 * Runs the measurements and checks them against {@linkcode TARGETS}.
 * @throws {RangeError} before anything runs when an option is out of range
 */
export async function runBench(options: BenchOptions = {}): Promise<BenchReport> {
  const {
    backlog = 20_000,
    orders = 5_000,
    concurrency = 50,
    rate = 200,
    seconds = 20,
    store = "sqlite",
    instances = [1],
    only = DEFAULT_SECTIONS,
    rates,
    stepSeconds = 5,
    cluster = false,
    retention,
    idleSeconds = IDLE_SETTLE_SECONDS,
    log = () => {},
    command = "deno task bench",
  } = options;
  const counts = { backlog, orders, concurrency };
  const checked = { ...counts, rate, seconds, idleSeconds, stepSeconds };
  for (const [name, value] of Object.entries(checked)) {
    if (!(value > 0) || (name in counts && !Number.isInteger(value))) {
      throw new RangeError(
        `Cannot run the benchmark as ${name} must be a positive number: current value is ${value}`,
      );
    }
  }
  if (instances.length === 0 || instances.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) {
    throw new RangeError(
      `Cannot run the benchmark as instances must be integers 1-16: current value is ${instances}`,
    );
  }
  if (store === "sqlite" && instances.some((n) => n > 1)) {
    throw new RangeError(
      `Cannot run the benchmark as several inventory instances need --store postgres (each SQLite file belongs to one process): current value is ${instances}`,
    );
  }
  if (retention !== undefined && !parseDuration(retention)) {
    throw new RangeError(
      `Cannot run the benchmark as retention must be a duration such as 5s: current value is "${retention}"`,
    );
  }
  const env = retention === undefined ? undefined : retentionEnv(retention);
  const began = performance.now();
  const machine = await describeMachine();
  const loadAverageBefore = loadAverage();
  const memory: MemoryPeaks = { rssMb: {}, privateMb: {} };
  const wanted = new Set(only);
  const measure = { log, memory };

  if (rates?.some((r) => !(r > 0))) {
    throw new RangeError(
      `Cannot run the benchmark as rates must be positive numbers: current value is ${rates}`,
    );
  }
  const ceiling = wanted.has("ceiling") ? await measureCeiling(backlog, measure) : undefined;
  if (ceiling) log(`ceiling: ${ceiling.msgPerSec} msg/s`);
  // As many orders as end to end places, through the same hops.
  const endToEndCeiling = wanted.has("ceiling")
    ? await measureEndToEndCeiling(orders, measure)
    : undefined;
  if (endToEndCeiling) log(`end-to-end ceiling: ${endToEndCeiling.ordersPerSec} orders/s`);

  // SQLite first when PostgreSQL is measured, so that the table reads from the default onwards.
  const configs: BenchConfig[] = [
    ...(store === "postgres" ? [{ store: "sqlite" as const, instances: 1, env }] : []),
    ...instances.map((n) => ({ store, instances: n, env })),
  ];
  // The targets are checked on the requested store with the first instance count.
  const primary = configs.find((c) => c.store === store)!;
  const scale: ScaleRow[] = [];
  for (const config of configs) {
    const row: ScaleRow = { store: config.store, instances: config.instances };
    if (wanted.has("drain")) {
      row.drain = await measureDrain(backlog, config, measure);
      if (ceiling) row.drainRatio = round(row.drain.msgPerSec / ceiling.msgPerSec, 2);
      log(
        `drain (${config.store} ×${config.instances}): ${row.drain.msgPerSec} msg/s` +
          deletedNote(row.drain.retentionDeletedRows),
      );
    }
    if (wanted.has("e2e")) {
      row.endToEnd = await measureEndToEnd(orders, { ...config, concurrency }, measure);
      if (endToEndCeiling) {
        row.endToEndRatio = round(row.endToEnd.ordersPerSec / endToEndCeiling.ordersPerSec, 2);
      }
      log(
        `end to end (${config.store} ×${config.instances}): ${row.endToEnd.ordersPerSec} orders/s`,
      );
    }
    scale.push(row);
  }
  if (cluster && (wanted.has("drain") || wanted.has("e2e"))) {
    const row = await measureOnCluster(primary, { backlog, orders, concurrency, wanted, measure });
    if (row) scale.push(row);
  }
  const latency = wanted.has("latency")
    ? await measureLatency(rate, seconds, primary, measure)
    : undefined;
  if (latency) {
    log(
      `latency: p99 POST → notification ${latency.notified.p99} ms` +
        deletedNote(latency.retentionDeletedRows),
    );
  }
  const idle = wanted.has("idle")
    ? await measureIdle(primary, { ...measure, settleSeconds: idleSeconds })
    : undefined;
  if (idle) log(`idle: bare Deno ${idle.bareMb} MB, services ${JSON.stringify(idle.servicesMb)}`);
  // As many deliveries as orders end to end: one notification each.
  const webhook = wanted.has("webhook") ? await measureWebhook(orders, measure) : undefined;
  if (webhook) log(`webhook: ${webhook.deliveriesPerSec} deliveries/s`);
  const webhookHop = wanted.has("webhook")
    ? await measureWebhookHop(primary, { orders, concurrency, rate, seconds, measure })
    : undefined;
  // Peaks of their own: the curve drives the services past saturation, thousands of requests
  // waiting, and the memory targets are about the load they were built for.
  const curve = wanted.has("curve")
    ? await measureCurve(primary, {
      log,
      memory: { rssMb: {}, privateMb: {} },
      rates,
      stepSeconds,
    })
    : undefined;

  const measured = scale.filter((row) => row.drain || row.endToEnd);
  const partial = {
    primary: { store: primary.store, instances: primary.instances },
    scale: measured,
    latency,
  };
  const report: BenchReport = {
    command,
    machine,
    loadAverageBefore: round(loadAverageBefore, 2),
    settings: {
      backlog,
      orders,
      concurrency,
      rate,
      seconds,
      store,
      instances: instances.join(","),
      only: [...wanted].join(","),
      ...(retention === undefined ? {} : { retention }),
      ...(curve ? { rates: rates?.join(",") ?? "default", stepSeconds } : {}),
    },
    ceiling,
    endToEndCeiling,
    ...partial,
    peakRssMb: memory.rssMb,
    peakPrivateMb: memory.privateMb,
    idle,
    webhook,
    webhookHop,
    curve,
    targets: checkTargets({ ...partial, peakPrivateMb: memory.privateMb, idle }),
    durationSeconds: round((performance.now() - began) / 1000, 1),
  };
  return report;
}

/**
 * End to end and the latency run of `config` again, with notification delivering every
 * notification to a local receiver that verifies it, each with a receiver of its own.
 */
async function measureWebhookHop(
  config: BenchConfig,
  options: {
    orders: number;
    concurrency: number;
    rate: number;
    seconds: number;
    measure: { log: (line: string) => void; memory: MemoryPeaks };
  },
): Promise<WebhookHop> {
  const { orders, concurrency, rate, seconds, measure } = options;
  const receivers = [startWebhookReceiver(), startWebhookReceiver()];
  try {
    measure.log("webhook hop: end to end and latency, delivered to a local receiver");
    const endToEnd = await measureEndToEnd(
      orders,
      { ...config, concurrency, webhook: receivers[0] },
      measure,
    );
    measure.log(`end to end to the webhook: ${endToEnd.ordersPerSec} orders/s`);
    const latency = await measureLatency(
      rate,
      seconds,
      { ...config, webhook: receivers[1] },
      measure,
    );
    measure.log(`latency: p99 POST → webhook ${latency.delivered!.p99} ms`);
    const unsigned = receivers.flatMap((r) => r.received).filter((r) => !r.valid).length;
    if (unsigned > 0) {
      throw new Error(`Cannot trust the webhook figures as ${unsigned} signatures failed`);
    }
    return { endToEnd, latency };
  } finally {
    for (const receiver of receivers) await receiver.close();
  }
}

/** Says how many rows retention deleted during a measurement, when it deleted any. */
function deletedNote(rows: number): string {
  return rows > 0 ? `; retention deleted ${rows} rows meanwhile` : "";
}

/**
 * Drain and end to end of `config` on a private three-node cluster (the services given all three
 * nodes), or undefined after a line saying why when RabbitMQ is not installed here.
 */
async function measureOnCluster(
  config: BenchConfig,
  options: {
    backlog: number;
    orders: number;
    concurrency: number;
    wanted: Set<Section>;
    measure: { log: (line: string) => void; memory: MemoryPeaks };
  },
): Promise<ScaleRow | undefined> {
  const { backlog, orders, concurrency, wanted, measure } = options;
  const { log } = measure;
  let cluster: Cluster;
  try {
    log("starting a private three-node cluster");
    cluster = await startCluster({ log });
  } catch (error) {
    if (!(error instanceof RabbitMqNotInstalledError)) throw error;
    log(`cluster skipped: ${error.message}`);
    return undefined;
  }
  try {
    const onCluster: BenchConfig = {
      ...config,
      broker: { amqpUrl: cluster.amqpUrls("/"), managementUrl: cluster.managementUrl() },
    };
    const row: ScaleRow = { ...config, broker: `${cluster.nodes.length}-node cluster` };
    if (wanted.has("drain")) {
      row.drain = await measureDrain(backlog, onCluster, measure);
      log(`drain (cluster): ${row.drain.msgPerSec} msg/s`);
    }
    if (wanted.has("e2e")) {
      row.endToEnd = await measureEndToEnd(orders, { ...onCluster, concurrency }, measure);
      log(`end to end (cluster): ${row.endToEnd.ordersPerSec} orders/s`);
    }
    return row;
  } finally {
    await cluster.close();
  }
}

const USAGE = `Usage: deno task bench [options]

  --backlog N         messages in the ceiling's and the drain's backlog (default 20000)
  --orders N          orders placed end to end over HTTP (default 5000)
  --concurrency N     requests in flight end to end (default 50)
  --rate N            orders per second of the latency run (default 200)
  --seconds N         length of the latency run (default 20)
  --store S           sqlite or postgres (default sqlite); postgres also measures
                      SQLite with one inventory, to print them side by side
  --instances N[,N…]  inventory instances, e.g. 1,2,3 for one configuration each
                      (default 1; more than 1 needs --store postgres)
  --retention D       INBOX_RETENTION and IDEMPOTENCY_KEY_RETENTION of the services; a
                      few seconds keeps the cleanup deleting all along (default theirs, 7d/24h)
  --only LIST         some of ceiling,drain,e2e,latency,idle,webhook,curve (default all
                      but curve); ceiling: the hop's and the end-to-end pipeline's;
                      webhook: the sender's drain, and end to end and latency again up
                      to the delivery to a local receiver
  --curve             also sweep the offered rate up to saturation, open loop, with a
                      webhook receiver: p50/p95/p99 POST → decision and → webhook per
                      rate, the knee, the highest rate held with p99 under 100 ms
  --rates N[,N…]      the curve's rates in orders/s (default 100,200,500,1000,1500,2000
                      and on by 1000 until a rate is not held)
  --step-seconds N    how long the curve sends each rate (default 5)
  --cluster           also drain and end to end on a private three-node RabbitMQ
                      cluster started for the run, beside the single node
  --idle-seconds N    how long each process sits idle before its idle memory is read
                      (default 45: V8 gives back start-up's heap after about 30 s)
  --quick             small numbers for a smoke run (backlog 2000, orders 500, 100/s for 3 s,
                      idle 5 s, curve steps of 2 s)
  --json              print one JSON object (the steps go to stderr)
  --report FILE       also write the figures as a dated markdown section to FILE,
                      for docs/performance.md; with --curve, its chart beside it
                      (FILE without .md, then _curve.svg)`;

/**
 * Parses the command line into {@linkcode BenchOptions}.
 * @throws {RangeError} naming the option and what it must be
 */
export function parseBenchArgs(
  args: string[],
): BenchOptions & { json: boolean; help: boolean; report?: string } {
  const { values, positive, oneOf } = readCommandLine(args, {
    tool: "the benchmark",
    options: toolOptions(
      [
        "backlog",
        "orders",
        "concurrency",
        "rate",
        "seconds",
        "store",
        "instances",
        "only",
        "retention",
        "idle-seconds",
        "report",
        "rates",
        "step-seconds",
      ],
      ["quick", "cluster", "curve"],
    ),
  });
  if (values.report === "") {
    throw new RangeError(
      `Cannot run the benchmark as --report must name a file: current value is ""`,
    );
  }
  const quick = values.quick === true;
  let only: Section[] | undefined;
  if (typeof values.only === "string") {
    only = values.only.split(",").map((part) => part.trim()) as Section[];
    const unknown = only.filter((part) => !SECTIONS.includes(part));
    if (unknown.length > 0 || only.length === 0) {
      throw new RangeError(
        `Cannot run the benchmark as --only must list some of ${
          SECTIONS.join(",")
        }: current value is "${values.only}"`,
      );
    }
  }
  if (values.curve === true) only = [...new Set([...(only ?? DEFAULT_SECTIONS), "curve" as const])];
  let rates: number[] | undefined;
  if (typeof values.rates === "string") {
    rates = values.rates.split(",").map(Number);
    if (rates.some((r) => !(r > 0))) {
      throw new RangeError(
        `Cannot run the benchmark as --rates must be positive numbers separated by commas: current value is "${values.rates}"`,
      );
    }
  }
  let instances: number[] | undefined;
  if (typeof values.instances === "string") {
    instances = values.instances.split(",").map(Number);
    if (instances.some((n) => !Number.isInteger(n) || n < 1 || n > 16)) {
      throw new RangeError(
        `Cannot run the benchmark as --instances must be integers 1-16 separated by commas: current value is "${values.instances}"`,
      );
    }
  }
  return {
    backlog: positive("backlog", quick ? 2_000 : undefined),
    orders: positive("orders", quick ? 500 : undefined),
    concurrency: positive("concurrency"),
    rate: positive("rate", quick ? 100 : undefined),
    seconds: positive("seconds", quick ? 3 : undefined),
    idleSeconds: positive("idle-seconds", quick ? 5 : undefined),
    store: oneOf("store", ["sqlite", "postgres"] as const),
    instances,
    only,
    rates,
    stepSeconds: positive("step-seconds", quick ? 2 : undefined),
    cluster: values.cluster === true,
    retention: typeof values.retention === "string" ? values.retention : undefined,
    json: values.json === true,
    help: values.help === true,
    report: typeof values.report === "string" ? values.report : undefined,
  };
}

if (import.meta.main) {
  await runToolFromCommandLine("the benchmark", {
    usage: USAGE,
    parse: parseBenchArgs,
    async run(options, log) {
      const stamp = () => `[${new Date().toISOString().slice(11, 19)}]`;
      const { report: reportFile, ...benchOptions } = options;
      const report = await runBench({
        ...benchOptions,
        log: (line) => log(`${stamp()} ${line}`),
        command: ["deno task bench", ...Deno.args].join(" "),
      });
      if (reportFile) {
        const measuredOn = new Date();
        let curveChart: string | undefined;
        if (report.curve) {
          curveChart = `${reportFile.replace(/\.md$/, "")}_curve.svg`;
          const title = `POST → decision against the offered rate, ${
            measuredOn.toISOString().slice(0, 10)
          }`;
          await Deno.writeTextFile(curveChart, renderCurveChart(report.curve, title));
          log(`${stamp()} wrote the curve's chart to ${curveChart}`);
        }
        await Deno.writeTextFile(
          reportFile,
          formatMarkdownReport(report, measuredOn, {
            curveChart: curveChart?.split("/").at(-1),
          }),
        );
        log(`${stamp()} wrote the markdown report to ${reportFile}`);
      }
      return report;
    },
    format: formatReport,
  });
}
