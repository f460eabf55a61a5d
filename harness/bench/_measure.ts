/**
 * The benchmark's measurements of the services, each on a stack of its own: the drain of a backlog
 * by inventory, orders end to end over HTTP, and the latency of each order at a steady rate. The
 * last two also run with a webhook receiver given: notification then delivers every notification
 * to it, and they time up to the delivery. The ceilings they compare with are in `_ceilings.ts`.
 * @module
 */
import { mapLimit, waitFor } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { readMetric, request } from "../lib/http_probes.ts";
import { MENU } from "../lib/menu.ts";
import { type Percentiles, percentiles } from "../lib/percentiles.ts";
import {
  type BenchConfig,
  benchOrderPlaced,
  type BenchStack,
  type CpuCores,
  cpuMsPer,
  type MemoryPeaks,
  publishAll,
  startCpuMeter,
  STOCK_PER_SKU,
  withBenchStack,
} from "./_stack.ts";
import { countSeen, postOrder, sendOpenLoop, sinceSent, watchOrderOutcomes } from "./_open_loop.ts";
import { watchDeliveries } from "./_webhook.ts";
import type { WebhookReceiver } from "../lib/webhook_receiver.ts";
import { EventType, Queue } from "../../shared/topology.ts";

/** Options every measurement takes. */
export interface MeasureOptions {
  /** Receives a line per step. @default {no output} */
  log?: (line: string) => void;
  /** Peak memory per service, raised by every stack that ran. @default {fresh peaks} */
  memory?: MemoryPeaks;
}

/** A drained backlog: see {@linkcode measureDrain}. */
export interface DrainResult {
  messages: number;
  instances: number;
  /** From the spawn of inventory until the last instance listened. */
  startupSeconds: number;
  /** From the moment every instance listened until the backlog was handled. */
  seconds: number;
  /** `messages / seconds`: start-up not counted. */
  msgPerSec: number;
  /** The same, start-up counted. */
  msgPerSecWithStartup: number;
  /** CPU per process from the moment every instance listened until the backlog was handled. */
  cpuCores: CpuCores;
  /** Milliseconds of CPU per drained message, by process. */
  cpuMsPerMessage: Record<string, number>;
  /** Deadlocks in the PostgreSQL database; absent on SQLite. */
  deadlocks?: number;
  /** Inbox rows that retention deleted while it drained: none unless its window is seconds. */
  retentionDeletedRows: number;
}

/**
 * Publishes `messages` valid `OrderPlaced` events while inventory is not running, starts
 * `config.instances` inventories and times them until `order-placed` is empty, every delivery is
 * acked after its commit and every `InventoryReserved` is confirmed by the broker. Only inventory
 * runs, so that the figure compares with the ceiling's hop; the stock taken is checked afterwards.
 */
export async function measureDrain(
  messages: number,
  config: BenchConfig,
  options: MeasureOptions = {},
): Promise<DrainResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} } } = options;
  return await withBenchStack(config, { services: [], memory }, async (bench) => {
    const { stack } = bench;
    await publishAll(stack, Array.from({ length: messages }, (_, i) => benchOrderPlaced(i)));
    await waitFor(
      `${messages} messages in ${Queue.orderPlaced}`,
      async () => await stack.tools.queueDepth(Queue.orderPlaced) >= messages,
    );
    log(`drain: ${messages} OrderPlaced waiting; starting ${config.instances} inventory`);
    const spawned = performance.now();
    const inventories = await bench.startInventories();
    const stopCpuMeter = await startCpuMeter(inventories, { databaseUrl: bench.databaseUrl });
    const listening = performance.now();
    const urls = inventories.map((service) => service.url);
    const sum = async (name: string, labels: Record<string, string>) =>
      (await Promise.all(urls.map((url) => readMetric(url, name, labels))))
        .reduce((a, b) => a + b, 0);
    await waitFor("the backlog to be handled", async () => {
      // The depth is cheap to ask the broker; the services' counters only matter at the end.
      if (await stack.tools.queueDepth(Queue.orderPlaced) > 0) return false;
      const acked = await sum("campus_food_messages_acked_total", { queue: Queue.orderPlaced });
      const confirmed = await sum("campus_food_events_confirmed_total", {
        event_type: EventType.InventoryReserved,
      });
      return acked >= messages && confirmed >= messages;
    }, { timeoutMs: 120_000 + messages * 20, intervalMs: 20 });
    const ended = performance.now();
    const cpu = await stopCpuMeter();
    await checkStockTaken(inventories[0].url, messages);
    const seconds = (ended - listening) / 1000;
    return {
      messages,
      instances: config.instances,
      startupSeconds: round((listening - spawned) / 1000, 3),
      seconds: round(seconds, 3),
      msgPerSec: Math.round(messages / seconds),
      msgPerSecWithStartup: Math.round(messages / ((ended - spawned) / 1000)),
      cpuCores: cpu.cores,
      cpuMsPerMessage: cpuMsPer(cpu, messages),
      ...await deadlocksOf(bench),
      retentionDeletedRows: await retentionDeletedRows(urls),
    };
  });
}

/** Rows that retention deleted so far in the services at `urls`, every table together. */
async function retentionDeletedRows(urls: string[]): Promise<number> {
  let rows = 0;
  for (const url of urls) {
    for (const table of ["inbox", "idempotency_keys"]) {
      rows += await readMetric(url, "campus_food_retention_deleted_rows_total", { table });
    }
  }
  return rows;
}

async function deadlocksOf(bench: BenchStack): Promise<{ deadlocks?: number }> {
  const deadlocks = await bench.deadlocks();
  return deadlocks === undefined ? {} : { deadlocks };
}

/** Every order of the workload takes one item: the stock must have moved by exactly `orders`. */
async function checkStockTaken(inventoryUrl: string, orders: number): Promise<void> {
  const stock = await (await request(`${inventoryUrl}/stock`)).json() as Record<string, number>;
  const taken = MENU.reduce((sum, sku) => sum + (STOCK_PER_SKU - stock[sku]), 0);
  if (taken !== orders) {
    throw new Error(`Cannot trust the figures as ${taken} items were taken for ${orders} orders`);
  }
}

/** Orders end to end: see {@linkcode measureEndToEnd}. */
export interface EndToEndResult {
  orders: number;
  concurrency: number;
  instances: number;
  /**
   * From the first request until the last order's notification was recorded, or with a webhook
   * until it reached the receiver.
   */
  seconds: number;
  ordersPerSec: number;
  /** `POST /order` round trips, in milliseconds. */
  http: Percentiles;
  /** CPU per process while the orders went through. */
  cpuCores: CpuCores;
  /** Milliseconds of CPU per order, by process. */
  cpuMsPerOrder: Record<string, number>;
  /** Deadlocks in the PostgreSQL database, warm-up included; absent on SQLite. */
  deadlocks?: number;
}

/** Orders placed and answered before the clock starts: start-up and JIT are not the subject. */
export const WARM_UP_ORDERS = 50;

/**
 * Places `orders` orders over HTTP, `concurrency` at a time, on the whole system, and times them
 * from the first request until the notification service acked the last `OrderConfirmed`, or,
 * given a `webhook` receiver, until the last notification reached it.
 */
export async function measureEndToEnd(
  orders: number,
  config: BenchConfig & { concurrency: number; webhook?: WebhookReceiver },
  options: MeasureOptions = {},
): Promise<EndToEndResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} } } = options;
  const { concurrency, webhook } = config;
  const services = ["order", "inventory", "notification"] as const;
  return await withBenchStack(
    withWebhook(config),
    { services: [...services], memory },
    async (bench) => {
      const { stack } = bench;
      const delivered = webhook && watchDeliveries(webhook);
      const notified = async () =>
        delivered ? delivered.deliveredAt().size : await readMetric(
          stack.url("notification"),
          "campus_food_messages_acked_total",
          { queue: Queue.orderConfirmed },
        );
      await postOrders(stack.url("order"), WARM_UP_ORDERS, { concurrency });
      await waitFor("the warm-up orders", async () => await notified() >= WARM_UP_ORDERS);
      log(`end to end: ${orders} orders over HTTP, ${concurrency} at a time`);
      const stopCpuMeter = await startCpuMeter([
        stack.services.order!,
        ...bench.inventories(),
        stack.services.notification!,
      ], { databaseUrl: bench.databaseUrl });
      const began = performance.now();
      const { latenciesMs } = await postOrders(stack.url("order"), orders, {
        concurrency,
        first: WARM_UP_ORDERS,
      });
      await waitFor(
        `${orders} notifications${webhook ? " at the webhook" : ""}`,
        async () => await notified() >= WARM_UP_ORDERS + orders,
        { timeoutMs: 120_000 + orders * 20, intervalMs: 20 },
      );
      const seconds = (performance.now() - began) / 1000;
      const cpu = await stopCpuMeter();
      return {
        orders,
        concurrency,
        instances: config.instances,
        seconds: round(seconds, 3),
        ordersPerSec: Math.round(orders / seconds),
        http: percentiles(latenciesMs),
        cpuCores: cpu.cores,
        cpuMsPerOrder: cpuMsPer(cpu, orders),
        ...await deadlocksOf(bench),
      };
    },
  );
}

/**
 * POSTs orders `first … first + count - 1` of the workload, `concurrency` at a time.
 * @throws {Error} when one is not accepted with 202
 */
async function postOrders(
  orderUrl: string,
  count: number,
  options: { concurrency: number; first?: number },
): Promise<{ latenciesMs: number[]; orderIds: string[] }> {
  const { concurrency, first = 0 } = options;
  const latenciesMs: number[] = [];
  const orderIds = await mapLimit(
    Array.from({ length: count }, (_, i) => first + i),
    concurrency,
    async (i) => {
      const { orderId, ms } = await postOrder(orderUrl, i);
      latenciesMs.push(ms);
      return orderId;
    },
  );
  return { latenciesMs, orderIds };
}

/** Latency at a steady rate: see {@linkcode measureLatency}. */
export interface LatencyResult {
  /** Orders per second asked for. */
  rate: number;
  /** Orders per second really sent. */
  sentPerSec: number;
  orders: number;
  seconds: number;
  /** POST round trips, in milliseconds. */
  http: Percentiles;
  /** From sending the POST until the order service logged the order CONFIRMED. */
  confirmed: Percentiles;
  /** From sending the POST until the notification service logged the student's message. */
  notified: Percentiles;
  /** With a webhook: from sending the POST until the notification reached the receiver. */
  delivered?: Percentiles;
  /**
   * Milliseconds of CPU per order, by process, from the first POST until the last order was
   * notified (and delivered): at a steady rate, what each order costs with the idle work shared out.
   */
  cpuMsPerOrder: Record<string, number>;
  /** Rows that retention deleted in the three services meanwhile: none unless its window is seconds. */
  retentionDeletedRows: number;
}

/**
 * Sends `rate` orders per second for `seconds`, open loop: each POST goes at its time whether or
 * not earlier ones were answered, as students would. Each order's confirmation and notification
 * are timed from the services' JSON log lines (written after the commit, stamped in ms by the same
 * clock as the send time); given a `webhook` receiver, its delivery from the receiver's arrivals.
 */
export async function measureLatency(
  rate: number,
  seconds: number,
  config: BenchConfig & { webhook?: WebhookReceiver },
  options: MeasureOptions = {},
): Promise<LatencyResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} } } = options;
  const services = ["order", "inventory", "notification"] as const;
  return await withBenchStack(
    withWebhook(config),
    { services: [...services], memory },
    async (bench) => {
      const { stack } = bench;
      const outcomes = watchOrderOutcomes(
        { order: stack.services.order!, notification: stack.services.notification! },
        config.webhook && watchDeliveries(config.webhook),
      );
      const orderUrl = stack.url("order");
      await postOrders(orderUrl, WARM_UP_ORDERS, { concurrency: 10 });
      const total = Math.max(1, Math.round(rate * seconds));
      log(`latency: ${total} orders at ${rate}/s for ${seconds} s, open loop`);
      const stopCpuMeter = await startCpuMeter([
        stack.services.order!,
        ...bench.inventories(),
        stack.services.notification!,
      ], { databaseUrl: bench.databaseUrl });
      const sent = await sendOpenLoop(orderUrl, { rate, count: total, first: WARM_UP_ORDERS });
      if (sent.refused > 0) throw new Error(sent.refusal);
      const { sentAtMs } = sent;
      await waitFor(`${total} orders confirmed and notified`, () => {
        outcomes.collect();
        const awaited = [outcomes.decidedAt, outcomes.notifiedAt];
        if (config.webhook) awaited.push(outcomes.deliveredAt());
        return awaited.every((at) => countSeen(sentAtMs, at) === total);
      }, { timeoutMs: 60_000, intervalMs: 100 });
      const cpu = await stopCpuMeter();
      return {
        rate,
        sentPerSec: sent.sentPerSec,
        orders: total,
        seconds,
        http: percentiles(sent.httpMs),
        confirmed: percentiles(sinceSent(sentAtMs, outcomes.decidedAt)),
        notified: percentiles(sinceSent(sentAtMs, outcomes.notifiedAt)),
        ...config.webhook && {
          delivered: percentiles(sinceSent(sentAtMs, outcomes.deliveredAt())),
        },
        cpuMsPerOrder: cpuMsPer(cpu, total),
        retentionDeletedRows: await retentionDeletedRows(services.map((name) => stack.url(name))),
      };
    },
  );
}

/** `config` with notification pointed at its `webhook` receiver, if it has one. */
export function withWebhook(config: BenchConfig & { webhook?: WebhookReceiver }): BenchConfig {
  const { webhook, ...rest } = config;
  return webhook ? { ...rest, env: { ...rest.env, ...webhook.env } } : rest;
}
