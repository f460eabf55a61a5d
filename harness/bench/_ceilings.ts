/**
 * The benchmark's two ceilings, what the broker alone does on this machine with the services'
 * client and every durability setting on (persistent messages, publisher confirms, quorum queues,
 * the services' prefetch and batching), no HTTP and no database: one consume → publish → ack hop,
 * the reference of the drain, and a bare pipeline of an order's hops, the reference of end to end.
 * @module
 */
import { waitFor, within } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { createLogger } from "../../shared/log.ts";
import { type Broker, connectBroker, DEFAULT_PREFETCH } from "../../shared/broker.ts";
import type { OutgoingMessage } from "../../shared/broker.ts";
import type { Delivery, Settlement } from "../../shared/delivery.ts";
import { inventoryOutcome, orderConfirmed, orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { childTraceparent } from "../../shared/traceparent.ts";
import { EventType, EXCHANGE, Queue } from "../../shared/topology.ts";
import type { MeasureOptions } from "./_measure.ts";
import {
  type BenchConfig,
  benchOrder,
  benchOrderPlaced,
  type CpuCores,
  cpuMsPer,
  publishAll,
  startCpuMeter,
  withBenchStack,
} from "./_stack.ts";

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
  return await withBenchStack(BARE, { services: [], memory }, async ({ stack }) => {
    const backlog = Array.from({ length: messages }, (_, i) => benchOrderPlaced(i));
    const publishing = performance.now();
    await publishAll(stack, backlog);
    const publishSeconds = (performance.now() - publishing) / 1000;
    log(`ceiling: ${messages} messages in ${Queue.orderPlaced}; consuming → publishing → acking`);
    const handled = new Progress();
    const stopCpuMeter = await startCpuMeter([]);
    const began = performance.now();
    // Not stopped afterwards: closing a consumer's channel closes the whole connection (see
    // broker.ts), which would log a reconnect; the stack's close ends it with the connection.
    relayHop(stack.broker, Queue.orderPlaced, handled, (delivery) => ({
      exchange: EXCHANGE,
      routingKey: EventType.InventoryReserved,
      body: delivery.body,
      messageId: delivery.messageId ?? "",
      correlationId: delivery.correlationId,
      type: EventType.InventoryReserved,
      headers: delivery.headers,
    }));
    await within(
      handled.reach(messages),
      60_000 + messages * 10,
      `${messages} messages through the hop`,
    );
    const seconds = (performance.now() - began) / 1000;
    return {
      messages,
      seconds: round(seconds, 3),
      msgPerSec: Math.round(messages / seconds),
      publishMsgPerSec: Math.round(messages / publishSeconds),
      cpuCores: (await stopCpuMeter()).cores,
    };
  });
}

/** The end-to-end ceiling: see {@linkcode measureEndToEndCeiling}. */
export interface EndToEndCeilingResult {
  orders: number;
  /** Orders published but not yet through the last hop, at most. */
  window: number;
  /** From the first `OrderPlaced` published until the last `OrderConfirmed` was handled. */
  seconds: number;
  ordersPerSec: number;
  /** CPU of the broker and of this process (every hop's client) meanwhile. */
  cpuCores: CpuCores;
  /** Milliseconds of CPU per order, by process. */
  cpuMsPerOrder: Record<string, number>;
}

/** Orders published ahead of the last hop at most: a steady flow, not a backlog to drain. */
const PIPELINE_WINDOW = 1_000;

/** `OrderPlaced` per publish, as the order service's relay publishes what commits together. */
const PIPELINE_CHUNK = 100;

/**
 * The physical limit of this machine for an order's hops: `orders` orders go through a bare
 * pipeline of the broker hops an order takes, `OrderPlaced` → inventory → `InventoryReserved` →
 * order → `OrderConfirmed` → notification, each message the size the services send (headers
 * included), persistent, published with confirms to the quorum queues the services consume, with
 * their prefetch and batching, acked after the next hop's publish is confirmed. Each service's
 * part has a connection of its own, as the three services do; all of them run in this process.
 * At most {@linkcode PIPELINE_WINDOW} orders are between their `OrderPlaced` and the last hop, so
 * that the queues hold a flow rather than a backlog. No HTTP, no database, no services.
 */
export async function measureEndToEndCeiling(
  orders: number,
  options: MeasureOptions = {},
): Promise<EndToEndCeilingResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} } } = options;
  return await withBenchStack(BARE, { services: [], memory }, async ({ stack }) => {
    const workload = pipelineWorkload(orders);
    const connections = ["order", "inventory", "notification"].map((name) =>
      connectBroker(stack.amqpUrl.split(","), {
        log: createLogger(`pipeline-${name}`, { level: "error" }),
        connectionName: `bench pipeline ${name}`,
      })
    );
    const [order, inventory, notification] = connections;
    try {
      await waitFor("the pipeline's connections", () => connections.every((c) => c.connected));
      const reserved = new Progress();
      const decided = new Progress();
      const notified = new Progress();
      const consumers = [
        relayHop(inventory, Queue.orderPlaced, reserved, (d) => workload.next(d, "reserved")),
        relayHop(order, Queue.inventoryReserved, decided, (d) => workload.next(d, "confirmed")),
        notification.consume(Queue.orderConfirmed, async (batch) => {
          notified.add(batch.length);
          return await Promise.resolve(batch.map((): Settlement => ({ action: "ack" })));
        }, { prefetch: DEFAULT_PREFETCH }),
      ];
      log(`end-to-end ceiling: ${orders} orders through the bare pipeline of an order's hops`);
      const stopCpuMeter = await startCpuMeter([]);
      const began = performance.now();
      for (let first = 0; first < orders; first += PIPELINE_CHUNK) {
        await notified.reach(first - PIPELINE_WINDOW);
        // Not awaited: the next chunk goes while this one waits for its confirms, as the relay's
        // rounds follow the commits.
        within(
          order.publish(workload.placed.slice(first, first + PIPELINE_CHUNK)),
          30_000,
          "the broker to confirm OrderPlaced",
        ).catch(notified.fail);
      }
      await within(notified.reach(orders), 60_000 + orders * 20, `${orders} orders through`);
      const seconds = (performance.now() - began) / 1000;
      const cpu = await stopCpuMeter();
      await Promise.all(consumers.map((consumer) => consumer.stop()));
      return {
        orders,
        window: PIPELINE_WINDOW,
        seconds: round(seconds, 3),
        ordersPerSec: Math.round(orders / seconds),
        cpuCores: cpu.cores,
        cpuMsPerOrder: cpuMsPer(cpu, orders),
      };
    } finally {
      await Promise.all(connections.map((connection) => connection.close()));
    }
  });
}

/** The ceilings need the broker only: a stack without services or stock. */
const BARE: BenchConfig = { store: "sqlite", instances: 1 };

/**
 * Consumes `queue` and publishes, for each batch, the message `next` makes of each delivery with
 * confirms, then acks the batch: one hop of a service, without its database.
 */
function relayHop(
  broker: Broker,
  queue: Queue,
  handled: Progress,
  next: (delivery: Delivery) => OutgoingMessage,
): { stop(): Promise<void> } {
  return broker.consume(queue, async (batch) => {
    await broker.publish(batch.map(next));
    handled.add(batch.length);
    return batch.map((): Settlement => ({ action: "ack" }));
  }, { prefetch: DEFAULT_PREFETCH });
}

/** Each order's three events, made before the clock starts, as the services would send them. */
interface PipelineWorkload {
  placed: OutgoingMessage[];
  /** The message the hop after `delivery` publishes: its order's `reserved` or `confirmed`. */
  next(delivery: Delivery, which: "reserved" | "confirmed"): OutgoingMessage;
}

function pipelineWorkload(orders: number): PipelineWorkload {
  const later = new Map<string, { reserved: OutgoingMessage; confirmed: OutgoingMessage }>();
  const placed = Array.from({ length: orders }, (_, i): OutgoingMessage => {
    const order = { order_id: newId(), ...benchOrder(i), created_at: new Date().toISOString() };
    const traceparent = childTraceparent();
    const message = (event: { event_id: string; event_type: string }) => ({
      exchange: EXCHANGE,
      routingKey: event.event_type,
      body: JSON.stringify(event),
      messageId: event.event_id,
      correlationId: order.order_id,
      type: event.event_type,
      headers: { traceparent: childTraceparent(traceparent) },
    });
    later.set(order.order_id, {
      reserved: message(inventoryOutcome(order)),
      confirmed: message(orderConfirmed(order)),
    });
    return message(orderPlaced(order));
  });
  return {
    placed,
    next: (delivery, which) => later.get(delivery.correlationId!)![which],
  };
}

/**
 * A count that grows as a hop handles messages, and promises that resolve once it reaches a
 * number: how the pipeline's source waits for room in its window without polling.
 */
class Progress {
  #count = 0;
  #waiting: { at: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  #failure?: unknown;

  add(n: number): void {
    this.#count += n;
    const reached = this.#waiting.filter((waiter) => waiter.at <= this.#count);
    this.#waiting = this.#waiting.filter((waiter) => waiter.at > this.#count);
    for (const waiter of reached) waiter.resolve();
  }

  /** Resolves once the count is at least `at`; rejects once the flow has failed. */
  reach(at: number): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#count >= at) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiting.push({ at, resolve, reject }));
  }

  /** Ends every wait with `error`: a publish the broker never confirmed stops the flow. */
  fail = (error: unknown): void => {
    this.#failure = error;
    for (const waiter of this.#waiting.splice(0)) waiter.reject(error);
  };
}
