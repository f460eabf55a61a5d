/**
 * The benchmark's stacks: one isolated stack per measurement, on SQLite or on a throwaway
 * PostgreSQL database with several inventory instances, plenty of stock, and the peak memory of
 * every service read before it closes. Also the workload: orders and `OrderPlaced` events.
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { mapLimit, sleep, within } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import type { BrokerAddress } from "../lib/broker_address.ts";
import type { OrderRequest } from "../lib/http_probes.ts";
import { orderPlacedMessage } from "../lib/broker_probes.ts";
import { cleanUpOnInterrupt } from "../lib/interrupt.ts";
import { MENU, menuStock, stockEnv } from "../lib/menu.ts";
import type { RunningService, ServiceName } from "../lib/service_process.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { createDatabase } from "../../shared/testing/stores.ts";
import {
  brokerPid,
  cpuSeconds,
  peakRssMb,
  postgresPid,
  privateRssMb,
  serverCpuSeconds,
} from "./_stats.ts";
import type { OutgoingMessage } from "../../shared/broker.ts";
import { orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { childTraceparent } from "../../shared/traceparent.ts";

/** Where the services keep their state. */
export type StoreKind = "sqlite" | "postgres";

/** How a measurement's stack runs. */
export interface BenchConfig {
  store: StoreKind;
  /** Inventory instances, competing consumers of `order-placed`; more than 1 needs PostgreSQL. */
  instances: number;
  /** Another broker to run on, such as a private cluster. @default {the broker at AMQP_URL} */
  broker?: BrokerAddress;
  /**
   * The PostgreSQL server to make the stack's database on, as a superuser's URL.
   * @default {the server of TEST_DATABASE_URL}
   */
  databaseServer?: string;
  /** More environment for the services, such as their retention windows. @default {none} */
  env?: Record<string, string>;
}

/** The environment that sets both retention windows of the services to `window`, such as `5m`. */
export function retentionEnv(window: string): Record<string, string> {
  return { INBOX_RETENTION: window, IDEMPOTENCY_KEY_RETENTION: window };
}

/** Memory per service in MB, the largest of its instances and stacks. */
export type PeakRss = Partial<Record<ServiceName, number>>;

/** The peaks of every service over the stacks of a run. */
export interface MemoryPeaks {
  /** Peak resident memory (`VmHWM`), what the target is about. */
  rssMb: PeakRss;
  /** Peak private memory (`RssAnon`), sampled every 100 ms: RSS without the shared code pages. */
  privateMb: PeakRss;
}

/** Milliseconds between samples of each service's private memory. */
const MEMORY_SAMPLE_MS = 100;

/** A running benchmark stack: the harness's stack plus every inventory instance. */
export interface BenchStack {
  stack: Stack;
  /** Every running inventory: the stack's own first, then the extra instances. */
  inventories(): RunningService[];
  /** Starts inventory with `config.instances` instances at once. */
  startInventories(): Promise<RunningService[]>;
  /**
   * Deadlocks PostgreSQL detected in this stack's database so far, or undefined on SQLite. Each
   * costs a `deadlock_timeout` (1 s by default) and a batch handled again one event at a time.
   */
  deadlocks(): Promise<number | undefined>;
  /** The stack's own PostgreSQL database, or undefined on SQLite. */
  databaseUrl?: string;
}

/** Each SKU of the menu starts with more stock than any run can take. */
export const STOCK_PER_SKU = 900_000_000;

/** One order of the workload: one line, cycling through the menu and 50 students. */
export function benchOrder(i: number): OrderRequest {
  return { user_id: `student-${i % 50}`, items: [{ sku: MENU[i % MENU.length], qty: 1 }] };
}

/** The `OrderPlaced` message the order service would publish for `benchOrder(i)`. */
export function benchOrderPlaced(i: number): OutgoingMessage {
  const order = { order_id: newId(), ...benchOrder(i), created_at: new Date().toISOString() };
  return {
    ...orderPlacedMessage(orderPlaced(order)),
    headers: { traceparent: childTraceparent() },
  };
}

/**
 * Publishes `messages` through the stack's own connection, `chunk` at a time with confirms, a few
 * chunks in flight; resolves once the broker confirmed them all.
 */
export async function publishAll(
  stack: Stack,
  messages: OutgoingMessage[],
  chunk = 500,
): Promise<void> {
  const chunks: OutgoingMessage[][] = [];
  for (let i = 0; i < messages.length; i += chunk) chunks.push(messages.slice(i, i + chunk));
  await mapLimit(
    chunks,
    4,
    (part) => within(stack.broker.publish(part), 30_000, `the broker to confirm ${part.length}`),
  );
}

/**
 * Runs `fn` on a stack of its own for `config` (a fresh PostgreSQL database when it asks for one,
 * dropped afterwards) with `services` started, and raises `memory` to the peaks of every service
 * that ran.
 */
export async function withBenchStack<T>(
  config: BenchConfig,
  options: { services: ServiceName[]; memory: MemoryPeaks },
  fn: (bench: BenchStack) => Promise<T>,
): Promise<T> {
  const { services, memory } = options;
  const database = config.store === "postgres"
    ? await createDatabase(config.databaseServer)
    : undefined;
  // withStack() closes the stack on Ctrl-C, and this drops the database after it.
  const forgetDatabase = database ? cleanUpOnInterrupt(database.drop) : () => {};
  try {
    // LOG_LEVEL stays info, a line per message as in production: the harness needs the lines.
    const env: Record<string, string> = {
      INVENTORY_STOCK: stockEnv(menuStock(STOCK_PER_SKU)),
      ...config.env,
    };
    if (database) env.DATABASE_URL = database.url;
    return await withStack({ env, services, broker: config.broker }, async (stack) => {
      const extra: RunningService[] = [];
      const bench: BenchStack = {
        stack,
        inventories: () => [stack.services.inventory, ...extra].filter((s) => s !== undefined),
        async startInventories() {
          const started = await Promise.all([
            stack.start("inventory"),
            ...Array.from({ length: config.instances - 1 }, () => stack.startInstance("inventory")),
          ]);
          extra.push(...started.slice(1));
          return started;
        },
        deadlocks: () => database ? countDeadlocks(database.url) : Promise.resolve(undefined),
        databaseUrl: database?.url,
      };
      if (services.includes("inventory")) {
        extra.push(
          ...await Promise.all(
            Array.from({ length: config.instances - 1 }, () => stack.startInstance("inventory")),
          ),
        );
      }
      const running = () => [...Object.values(stack.services), ...extra];
      const raise = (peaks: PeakRss, name: ServiceName, mb: number | undefined) => {
        if (mb !== undefined) peaks[name] = Math.max(peaks[name] ?? 0, mb);
      };
      const sampler = setInterval(async () => {
        for (const service of running()) {
          raise(memory.privateMb, service.name, await privateRssMb(service.pid));
        }
      }, MEMORY_SAMPLE_MS);
      try {
        return await fn(bench);
      } finally {
        clearInterval(sampler);
        // VmHWM is the high-water mark the kernel keeps: one read before the stop is enough.
        for (const service of running()) {
          raise(memory.rssMb, service.name, await peakRssMb(service.pid));
        }
      }
    });
  } finally {
    forgetDatabase();
    await database?.drop().catch(() => {});
  }
}

/** CPU used per process over a window, in cores: CPU seconds per second of wall-clock time. */
export type CpuCores = Record<string, number>;

/** The CPU each process used over a window, by name: the harness, the broker, each service. */
export interface CpuUse {
  /** CPU seconds per second of wall-clock time: on two cores, these say who the bottleneck is. */
  cores: CpuCores;
  /** CPU seconds: divided by the orders handled, what one order costs each process. */
  seconds: Record<string, number>;
}

/** Options for {@linkcode startCpuMeter}. */
export interface CpuMeterOptions {
  /**
   * The stack's PostgreSQL database: its server's CPU is measured too, as `database`, when it runs
   * on this machine. It is the whole server's, other databases' work included. @default {none}
   */
  databaseUrl?: string;
}

/**
 * Starts measuring the CPU of `services`, the broker and the database server (when they run on
 * this machine) and this process; the function returned ends the window.
 */
export async function startCpuMeter(
  services: RunningService[],
  options: CpuMeterOptions = {},
): Promise<() => Promise<CpuUse>> {
  const pids: Record<string, number> = { harness: Deno.pid };
  const seen = new Map<string, number>();
  for (const service of services) {
    const n = (seen.get(service.name) ?? 0) + 1;
    seen.set(service.name, n);
    pids[n === 1 ? service.name : `${service.name}-${n}`] = service.pid;
  }
  const broker = await brokerPid();
  if (broker !== undefined) pids.broker = broker;
  const server = options.databaseUrl === undefined
    ? undefined
    : await postgresPid(options.databaseUrl);
  const read = async () => {
    const seconds = await cpuSeconds(pids);
    const database = server === undefined ? undefined : await serverCpuSeconds(server);
    return database === undefined ? seconds : { ...seconds, database };
  };
  const before = await read();
  const began = performance.now();
  return async function stopCpuMeter() {
    const after = await read();
    const wallSeconds = (performance.now() - began) / 1000;
    const names = Object.keys(after).filter((name) => name in before);
    const seconds = Object.fromEntries(
      names.map((name) => [name, round(after[name] - before[name], 2)]),
    );
    return {
      cores: Object.fromEntries(names.map((name) => [name, round(seconds[name] / wallSeconds)])),
      seconds,
    };
  };
}

/**
 * What one order (or message) cost each process of `cpu`, in milliseconds of CPU: its CPU seconds
 * divided by the `count` handled in the window. The kernel counts CPU in ticks of 10 ms, so a
 * window needs hundreds of orders for a figure worth reading.
 */
export function cpuMsPer(cpu: CpuUse, count: number): Record<string, number> {
  return Object.fromEntries(
    Object.entries(cpu.seconds).map(([name, seconds]) => [name, round(seconds * 1000 / count, 3)]),
  );
}

async function countDeadlocks(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    // Backends report their statistics when a transaction ends or within a second: wait for that.
    await sleep(1100);
    const result = await client.query(
      "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    );
    return Number(result.rows[0]?.deadlocks ?? 0);
  } finally {
    await client.end();
  }
}
