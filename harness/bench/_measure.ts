/**
 * The benchmark's four measurements, each on a stack of its own: the broker's ceiling for one
 * consume → publish → ack hop, the drain of a backlog by inventory, orders end to end over HTTP,
 * and the latency of each order at a steady rate. The last two also run with a webhook receiver
 * given: notification then delivers every notification to it, and they time up to the delivery.
 * @module
 */
import { mapLimit, sleep, waitFor, within } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { notificationSent } from "../lib/effects.ts";
import { postOrder as postOrderRequest, readMetric, request } from "../lib/http_probes.ts";
import { MENU } from "../lib/menu.ts";
import { type Percentiles, percentiles } from "./_stats.ts";
import {
  type BenchConfig,
  benchOrder,
  benchOrderPlaced,
  type BenchStack,
  type CpuCores,
  type MemoryPeaks,
  publishAll,
  startCpuMeter,
  STOCK_PER_SKU,
  withBenchStack,
} from "./_stack.ts";
import { watchDeliveries } from "./_webhook.ts";
import type { WebhookReceiver } from "../lib/webhook_receiver.ts";
import { DEFAULT_PREFETCH } from "../../shared/broker.ts";
import type { Settlement } from "../../shared/delivery.ts";
import { EventType, EXCHANGE, Queue } from "../../shared/topology.ts";

/** Options every measurement takes. */
export interface MeasureOptions {
  /** Receives a line per step. @default {no output} */
  log?: (line: string) => void;
  /** Peak memory per service, raised by every stack that ran. @default {fresh peaks} */
  memory?: MemoryPeaks;
}

/** The broker's ceiling: see {@linkcode measureCeiling}. */
export interface CeilingResult {
  messages: number;
  /** From the consumer's start until the last message was republished and confirmed. */
  seconds: number;
  msgPerSec: number;
  /** How fast the backlog itself was published with confirms, 500 per publish, 4 in flight. */
  publishMsgPerSec: number;
  /** CPU of the broker and of this process (the hop's client) while consuming. */
  cpuCores: CpuCores;
}

/**
 * The physical limit of this machine for one hop: `messages` persistent `OrderPlaced`-sized
 * messages wait in `order-placed`; a consumer with the services' client, prefetch and batching
 * republishes each batch to `InventoryReserved` (routed to `inventory-reserved`, as the real
 * inventory's outcomes are) with confirms, then acks the batch with one multiple ack.
 * No database, no services.
 */
export async function measureCeiling(
  messages: number,
  options: MeasureOptions = {},
): Promise<CeilingResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} } } = options;
  const config: BenchConfig = { store: "sqlite", instances: 1 };
  return await withBenchStack(config, { services: [], memory }, async ({ stack }) => {
    const backlog = Array.from({ length: messages }, (_, i) => benchOrderPlaced(i));
    const publishing = performance.now();
    await publishAll(stack, backlog);
    const publishSeconds = (performance.now() - publishing) / 1000;
    log(`ceiling: ${messages} messages in ${Queue.orderPlaced}; consuming → publishing → acking`);
    let handled = 0;
    let finish: () => void;
    const finished = new Promise<void>((resolve) => finish = resolve);
    const stopCpuMeter = await startCpuMeter([]);
    const began = performance.now();
    // Not stopped afterwards: closing a consumer's channel closes the whole connection (see
    // broker.ts), which would log a reconnect; the stack's close ends it with the connection.
    stack.broker.consume(Queue.orderPlaced, async (batch) => {
      await stack.broker.publish(batch.map((delivery) => ({
        exchange: EXCHANGE,
        routingKey: EventType.InventoryReserved,
        body: delivery.body,
        messageId: delivery.messageId ?? "",
        correlationId: delivery.correlationId,
        type: EventType.InventoryReserved,
        headers: delivery.headers,
      })));
      handled += batch.length;
      if (handled >= messages) finish();
      return batch.map((): Settlement => ({ action: "ack" }));
    }, { prefetch: DEFAULT_PREFETCH });
    await within(finished, 60_000 + messages * 10, `${messages} messages through the hop`);
    const seconds = (performance.now() - began) / 1000;
    return {
      messages,
      seconds: round(seconds, 3),
      msgPerSec: Math.round(messages / seconds),
      publishMsgPerSec: Math.round(messages / publishSeconds),
      cpuCores: await stopCpuMeter(),
    };
  });
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
    const stopCpuMeter = await startCpuMeter(inventories);
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
    const cpuCores = await stopCpuMeter();
    await checkStockTaken(inventories[0].url, messages);
    const seconds = (ended - listening) / 1000;
    return {
      messages,
      instances: config.instances,
      startupSeconds: round((listening - spawned) / 1000, 3),
      seconds: round(seconds, 3),
      msgPerSec: Math.round(messages / seconds),
      msgPerSecWithStartup: Math.round(messages / ((ended - spawned) / 1000)),
      cpuCores,
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
  /** Deadlocks in the PostgreSQL database, warm-up included; absent on SQLite. */
  deadlocks?: number;
}

/** Orders placed and answered before the clock starts: start-up and JIT are not the subject. */
const WARM_UP_ORDERS = 50;

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
      ]);
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
      return {
        orders,
        concurrency,
        instances: config.instances,
        seconds: round(seconds, 3),
        ordersPerSec: Math.round(orders / seconds),
        http: percentiles(latenciesMs),
        cpuCores: await stopCpuMeter(),
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

async function postOrder(orderUrl: string, i: number): Promise<{ orderId: string; ms: number }> {
  const began = performance.now();
  const response = await postOrderRequest(orderUrl, benchOrder(i));
  const text = await response.text();
  const ms = performance.now() - began;
  if (response.status !== 202) {
    throw new Error(`Cannot place an order as POST /order answered ${response.status}: ${text}`);
  }
  return { orderId: JSON.parse(text).order_id, ms };
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
  const stackConfig = withWebhook(config);
  return await withBenchStack(
    stackConfig,
    { services: [...services], memory },
    async ({ stack }) => {
      const delivered = config.webhook && watchDeliveries(config.webhook);
      const orderUrl = stack.url("order");
      await postOrders(orderUrl, WARM_UP_ORDERS, { concurrency: 10 });
      const total = Math.max(1, Math.round(rate * seconds));
      log(`latency: ${total} orders at ${rate}/s for ${seconds} s, open loop`);
      const sentAt = new Map<string, number>();
      const httpMs: number[] = [];
      const inFlight: Promise<void>[] = [];
      const began = performance.now();
      let lastSend = began;
      for (let i = 0; i < total; i++) {
        await sleep(began + (i * 1000) / rate - performance.now());
        lastSend = performance.now();
        const wallClock = Date.now();
        inFlight.push(
          postOrder(orderUrl, WARM_UP_ORDERS + i).then(({ orderId, ms }) => {
            sentAt.set(orderId, wallClock);
            httpMs.push(ms);
          }),
        );
      }
      await Promise.all(inFlight);
      const sendSeconds = (lastSend - began) / 1000;
      const order = stack.services.order!;
      const notification = stack.services.notification!;
      const confirmedAt = new Map<string, number>();
      const notifiedAt = new Map<string, number>();
      function collect(): boolean {
        for (const line of order.logs) {
          if (line.msg === "updated order status" && sentAt.has(String(line.order_id))) {
            confirmedAt.set(String(line.order_id), Date.parse(String(line.time)));
          }
        }
        for (const line of notification.logs) {
          const notified = notificationSent(line);
          if (notified && sentAt.has(notified.orderId)) {
            notifiedAt.set(notified.orderId, notified.atMs);
          }
        }
        const deliveredAll = !delivered ||
          [...sentAt.keys()].every((id) => delivered.deliveredAt().has(id));
        return confirmedAt.size === sentAt.size && notifiedAt.size === sentAt.size && deliveredAll;
      }
      await waitFor(`${total} orders confirmed and notified`, collect, {
        timeoutMs: 60_000,
        intervalMs: 100,
      });
      const since = (at: Map<string, number>) => [...at].map(([id, t]) => t - sentAt.get(id)!);
      return {
        rate,
        // n sends span n - 1 intervals.
        sentPerSec: total > 1 ? round((total - 1) / sendSeconds, 1) : rate,
        orders: total,
        seconds,
        http: percentiles(httpMs),
        confirmed: percentiles(since(confirmedAt)),
        notified: percentiles(since(notifiedAt)),
        ...delivered && {
          delivered: percentiles(
            since(new Map([...sentAt.keys()].map((id) => [id, delivered.deliveredAt().get(id)!]))),
          ),
        },
        retentionDeletedRows: await retentionDeletedRows(services.map((name) => stack.url(name))),
      };
    },
  );
}

/** `config` with notification pointed at its `webhook` receiver, if it has one. */
function withWebhook(config: BenchConfig & { webhook?: WebhookReceiver }): BenchConfig {
  const { webhook, ...rest } = config;
  return webhook ? { ...rest, env: { ...rest.env, ...webhook.env } } : rest;
}
