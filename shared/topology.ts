/**
 * The RabbitMQ topology: the one place that names exchanges and queues, and declares them.
 *
 * Every service declares the whole topology at start (declarations are idempotent), so any start
 * order works and no event is published before the queue that must hold it exists.
 * @module
 */

/** The topic exchange every event is published to, with its `event_type` as the routing key. */
export const EXCHANGE = "campus-food";

/** The direct exchange that routes a rejected message to its queue's `.dlq` by the queue's name. */
export const DEAD_LETTER_EXCHANGE = "campus-food.dlx";

/**
 * The topic exchange that routes a message to a retry queue by the retry queue's name. A topic
 * exchange, not the default one: a broker user may publish to it only the routing keys of its own
 * retry queues (RabbitMQ's topic permissions), where the default exchange reaches every queue.
 */
export const RETRY_EXCHANGE = "campus-food.retry";

/** Deliveries of one message before a quorum queue dead-letters it instead of redelivering it. */
export const DELIVERY_LIMIT = 10;

/** The event types, which are also the routing keys. */
export const EventType = {
  OrderPlaced: "OrderPlaced",
  InventoryReserved: "InventoryReserved",
  InventoryFailed: "InventoryFailed",
  OrderConfirmed: "OrderConfirmed",
  OrderRejected: "OrderRejected",
  OrderCancelled: "OrderCancelled",
} as const;
export type EventType = typeof EventType[keyof typeof EventType];

/** The consumed queues, each with the event types bound to it. */
export const Queue = {
  /** OrderPlaced, for inventory to reserve the order's stock. */
  orderPlaced: "order-placed",
  /** InventoryReserved, for the order service to decide the order. */
  inventoryReserved: "inventory-reserved",
  /** InventoryFailed, for the order service to decide the order. */
  inventoryFailed: "inventory-failed",
  /** OrderConfirmed, for notification to tell the student. */
  orderConfirmed: "order-confirmed",
  /** OrderRejected, for notification to tell the student. */
  orderRejected: "order-rejected",
  /** OrderCancelled, for inventory to release the order's stock (or never take it). */
  orderCancelled: "order-cancelled",
  /** OrderCancelled, for notification to tell the student. */
  orderCancelledNotifications: "order-cancelled-notifications",
} as const;
export type Queue = typeof Queue[keyof typeof Queue];

const BINDINGS: Record<Queue, EventType[]> = {
  [Queue.orderPlaced]: [EventType.OrderPlaced],
  [Queue.inventoryReserved]: [EventType.InventoryReserved],
  [Queue.inventoryFailed]: [EventType.InventoryFailed],
  [Queue.orderConfirmed]: [EventType.OrderConfirmed],
  [Queue.orderRejected]: [EventType.OrderRejected],
  [Queue.orderCancelled]: [EventType.OrderCancelled],
  [Queue.orderCancelledNotifications]: [EventType.OrderCancelled],
};

/**
 * A queue of an earlier version that this one neither binds nor consumes: `order-status`, bound to
 * both inventory outcomes and consumed by the order service before it took them from
 * `inventory-reserved` and `inventory-failed`. See docs/operations.md, Upgrading.
 */
export const RETIRED_QUEUE = "order-status";

/**
 * {@linkcode RETIRED_QUEUE} with the retry queues and the DLQ it had under `retryDelaysMs`: what
 * retiring it deletes, the queue itself first.
 */
export function retiredQueues(retryDelaysMs: readonly number[]): string[] {
  return [
    RETIRED_QUEUE,
    ...retryDelaysMs.map((delayMs) => retryQueue(RETIRED_QUEUE, delayMs)),
    `${RETIRED_QUEUE}.dlq`,
  ];
}

/** The three services. */
export type ServiceName = "order" | "inventory" | "notification";
export const SERVICES: readonly ServiceName[] = ["order", "inventory", "notification"];

/** What one service does on the broker: the queues it consumes, the events it publishes. */
export interface ServiceAccess {
  consumes: readonly Queue[];
  publishes: readonly EventType[];
}

/**
 * What each service does on the broker, as its `main.ts` wires it: what its broker user is allowed
 * (`deno task broker:setup`), and whom a consumer believes (see `origin.ts`).
 */
export const SERVICE_ACCESS: Readonly<Record<ServiceName, ServiceAccess>> = {
  order: {
    consumes: [Queue.inventoryReserved, Queue.inventoryFailed],
    publishes: [
      EventType.OrderPlaced,
      EventType.OrderConfirmed,
      EventType.OrderRejected,
      EventType.OrderCancelled,
    ],
  },
  inventory: {
    consumes: [Queue.orderPlaced, Queue.orderCancelled],
    publishes: [EventType.InventoryReserved, EventType.InventoryFailed],
  },
  notification: {
    consumes: [Queue.orderConfirmed, Queue.orderRejected, Queue.orderCancelledNotifications],
    publishes: [],
  },
};

/** The service that publishes `eventType`: the only one whose events of that type are believed. */
export function publisherOfType(eventType: EventType): ServiceName {
  return SERVICES.find((service) => SERVICE_ACCESS[service].publishes.includes(eventType))!;
}

/** The service that consumes `queue`. */
export function consumerOf(queue: Queue): ServiceName {
  return SERVICES.find((service) => SERVICE_ACCESS[service].consumes.includes(queue))!;
}

/** The event types bound to `queue`: the only ones a replay may put into it. */
export function eventTypesOf(queue: Queue): readonly EventType[] {
  return BINDINGS[queue];
}

/** The dead-letter queue of `queue`. */
export function deadLetterQueue(queue: Queue): string {
  return `${queue}.dlq`;
}

/** Every consumed queue. */
export const QUEUES: readonly Queue[] = Object.values(Queue);

/** What {@linkcode declareTopology} needs of a channel: the subset of AMQP's declare methods. */
export interface DeclaringChannel {
  assertExchange(name: string, type: string, options: { durable: boolean }): Promise<unknown>;
  assertQueue(
    name: string,
    options: { durable: boolean; arguments: Record<string, unknown> },
  ): Promise<unknown>;
  bindQueue(queue: string, exchange: string, pattern: string): Promise<unknown>;
}

/** Options for {@linkcode declareTopology}. */
export interface TopologyOptions {
  /**
   * The delays, in milliseconds, before each retry of a transiently failed message; one retry
   * queue per delay and consumed queue. @default {DEFAULT_RETRY_DELAYS_MS}
   */
  retryDelaysMs?: readonly number[];
}

/**
 * The delays before each retry, in milliseconds, where a service is given none: the one default
 * that the topology, the consumers and the operator tools share.
 */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [1000, 5000, 30000];

/** The queue where a message of `queue` waits `delayMs` before it returns to `queue`. */
export function retryQueue(queue: Queue | typeof RETIRED_QUEUE, delayMs: number): string {
  const label = delayMs % 1000 === 0 ? `${delayMs / 1000}s` : `${delayMs}ms`;
  return `${queue}.retry.${label}`;
}

/** Thrown when a queue exists with other arguments than this version declares. */
export class TopologyMismatchError extends Error {
  override name = "TopologyMismatchError";
}

/** Thrown when the broker user may not declare the topology and part of it does not exist. */
export class TopologyMissingError extends Error {
  override name = "TopologyMissingError";
}

/**
 * Dead-lettering that is confirmed by the target queue before the source lets go of the message,
 * so that nothing is lost on the way to a DLQ or back from a retry queue.
 */
const AT_LEAST_ONCE_DEAD_LETTERING = {
  "x-dead-letter-strategy": "at-least-once",
  "x-overflow": "reject-publish",
};

/**
 * Declares the exchanges, the quorum queues with their bindings and delivery limit, their retry
 * queues and their DLQs.
 *
 * Quorum queues count deliveries, so a message that crashes its consumer every time is
 * dead-lettered after {@linkcode DELIVERY_LIMIT} attempts instead of looping forever. A retry queue
 * holds a message for its delay (a queue TTL) and then dead-letters it back to its queue through
 * the default exchange: the wait costs no memory in the service and survives its crash.
 *
 * @throws {TopologyMismatchError} saying which queue exists with other arguments and what to do
 */
export async function declareTopology(
  channel: DeclaringChannel,
  options: TopologyOptions = {},
): Promise<void> {
  const { retryDelaysMs = DEFAULT_RETRY_DELAYS_MS } = options;
  await channel.assertExchange(EXCHANGE, "topic", { durable: true });
  await channel.assertExchange(DEAD_LETTER_EXCHANGE, "direct", { durable: true });
  await channel.assertExchange(RETRY_EXCHANGE, "topic", { durable: true });
  for (const queue of QUEUES) {
    const dlq = deadLetterQueue(queue);
    await assertQueue(channel, dlq, { "x-queue-type": "quorum" });
    await channel.bindQueue(dlq, DEAD_LETTER_EXCHANGE, queue);
    await assertQueue(channel, queue, {
      "x-queue-type": "quorum",
      "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
      "x-dead-letter-routing-key": queue,
      ...AT_LEAST_ONCE_DEAD_LETTERING,
    });
    for (const eventType of BINDINGS[queue]) await channel.bindQueue(queue, EXCHANGE, eventType);
    for (const delayMs of retryDelaysMs) {
      const retry = retryQueue(queue, delayMs);
      await assertQueue(channel, retry, {
        "x-queue-type": "quorum",
        "x-message-ttl": delayMs,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        ...AT_LEAST_ONCE_DEAD_LETTERING,
      });
      await channel.bindQueue(retry, RETRY_EXCHANGE, retry);
    }
  }
}

/** What {@linkcode ensureTopology} needs of a channel: declaring, checking, deleting, closing. */
export interface TopologyChannel extends DeclaringChannel {
  checkExchange(name: string): Promise<unknown>;
  checkQueue(name: string): Promise<{ messageCount: number; consumerCount: number }>;
  deleteQueue(name: string): Promise<unknown>;
  close(): Promise<void>;
}

/** Options for {@linkcode ensureTopology}. */
export interface EnsureTopologyOptions extends TopologyOptions {
  /**
   * Deletes {@linkcode RETIRED_QUEUE} where the broker user may: the order service's part, whose
   * consumers take its place. @default {false}
   */
  retire?: boolean;
  /** Told, in a sentence, why {@linkcode RETIRED_QUEUE} could not go yet. @default {nothing} */
  warn?: (message: string) => void;
}

/**
 * Declares the topology on a channel of its own or, where the broker user may not (a service's
 * least-privilege user, whose topology `deno task broker:setup` made), checks passively that
 * every exchange and queue of it exists. A refusal closes the channel it happened on, hence a
 * second one for the checks.
 *
 * @returns how the topology was made sure of
 * @throws {TopologyMissingError} naming the first exchange or queue that is missing
 * @throws {TopologyMismatchError} see {@linkcode declareTopology}
 */
export async function ensureTopology(
  openChannel: () => Promise<TopologyChannel>,
  options: EnsureTopologyOptions = {},
): Promise<"declared" | "checked"> {
  const declaring = await openChannel();
  try {
    await declareTopology(declaring, options);
    if (options.retire) await retire(openChannel, options);
    return "declared";
  } catch (error) {
    if (!hasReplyCode(error, ACCESS_REFUSED)) throw error;
  } finally {
    await declaring.close().catch(() => {});
  }
  const checking = await openChannel();
  try {
    await declareTopology(passively(checking), options);
    return "checked";
  } finally {
    await checking.close().catch(() => {});
  }
}

/**
 * Deletes {@linkcode RETIRED_QUEUE} and its retry queues and DLQ once no earlier order service
 * consumes it and its retry queues hold nothing (which would come back to it). What it still holds
 * then is also in `inventory-reserved` or `inventory-failed`, which took every outcome since the
 * earlier notification stopped (docs/operations.md, Upgrading), so it is deleted whatever it holds;
 * quorum queues cannot be deleted "if empty" anyway. A DLQ that holds dead letters stays.
 */
async function retire(
  openChannel: () => Promise<TopologyChannel>,
  options: EnsureTopologyOptions,
): Promise<void> {
  const { retryDelaysMs = DEFAULT_RETRY_DELAYS_MS, warn = () => {} } = options;
  const [queue, ...rest] = retiredQueues(retryDelaysMs);
  const found = await inspect(openChannel, queue);
  if (!found) return;
  if (found.consumerCount > 0) {
    return warn(
      `Queue "${queue}" of an earlier version is still consumed, by an order service of that ` +
        `version: it is deleted at this service's next start after that one stops ` +
        `(docs/operations.md, Upgrading)`,
    );
  }
  const held = [];
  for (const name of rest) {
    const depth = (await inspect(openChannel, name))?.messageCount ?? 0;
    if (depth > 0) held.push({ name, depth });
  }
  const waiting = held.filter(({ name }) => !name.endsWith(".dlq"));
  if (waiting.length > 0) {
    return warn(
      `Queue "${queue}" of an earlier version stays while its retry queues hold messages ` +
        `(${waiting.map(({ name, depth }) => `${name}: ${depth}`).join(", ")}): it is deleted ` +
        `at this service's next start after they are empty (docs/operations.md, Upgrading)`,
    );
  }
  for (const name of [queue, ...rest]) {
    if (held.some((h) => h.name === name)) continue;
    const channel = await openChannel();
    try {
      await channel.deleteQueue(name);
    } catch (error) {
      // A user that may not delete leaves it to broker:setup.
      if (!hasReplyCode(error, ACCESS_REFUSED)) throw error;
      return;
    } finally {
      await channel.close().catch(() => {});
    }
  }
}

/** The depth and consumers of `queue`, or undefined when it does not exist. */
async function inspect(
  openChannel: () => Promise<TopologyChannel>,
  queue: string,
): Promise<{ messageCount: number; consumerCount: number } | undefined> {
  // A missing queue closes the channel that asked: one channel per question.
  const channel = await openChannel();
  try {
    return await channel.checkQueue(queue);
  } catch (error) {
    if (hasReplyCode(error, NOT_FOUND)) return undefined;
    throw error;
  } finally {
    await channel.close().catch(() => {});
  }
}

const ACCESS_REFUSED = 403;
const PRECONDITION_FAILED = 406;
const NOT_FOUND = 404;

/** A channel whose declarations only check that what they name exists. */
function passively(channel: TopologyChannel): DeclaringChannel {
  function missing(kind: string, name: string): (error: unknown) => never {
    return (error) => {
      if (!hasReplyCode(error, NOT_FOUND)) throw error;
      throw new TopologyMissingError(
        `Cannot use ${kind} "${name}" as it does not exist and this service's broker user may ` +
          `not declare it: run deno task broker:setup with an administrator's credentials`,
        { cause: error },
      );
    };
  }
  return {
    assertExchange: (name) => channel.checkExchange(name).catch(missing("exchange", name)),
    assertQueue: (name) => channel.checkQueue(name).catch(missing("queue", name)),
    // A binding cannot be checked without the right to make it; broker:setup made them all.
    bindQueue: () => Promise.resolve(),
  };
}

/** True when `error` is the broker's channel or connection close with AMQP reply `code`. */
function hasReplyCode(error: unknown, code: number): boolean {
  return (error as { code?: unknown })?.code === code;
}

async function assertQueue(
  channel: DeclaringChannel,
  queue: string,
  args: Record<string, unknown>,
): Promise<void> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
  } catch (cause) {
    if (!hasReplyCode(cause, PRECONDITION_FAILED)) throw cause;
    throw new TopologyMismatchError(
      `Cannot declare queue "${queue}" as it already exists with other arguments (this version ` +
        `needs a durable quorum queue with ${JSON.stringify(args)}): move its messages elsewhere ` +
        `(a shovel, or deno task dlq for a .dlq), delete it, then restart`,
      { cause },
    );
  }
}
