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

/** Deliveries of one message before a quorum queue dead-letters it instead of redelivering it. */
export const DELIVERY_LIMIT = 10;

/** The event types, which are also the routing keys. */
export const EventType = {
  OrderPlaced: "OrderPlaced",
  InventoryReserved: "InventoryReserved",
  InventoryFailed: "InventoryFailed",
} as const;
export type EventType = typeof EventType[keyof typeof EventType];

/** The consumed queues, each with the event types bound to it. */
export const Queue = {
  /** OrderPlaced, for inventory. */
  orderPlaced: "order-placed",
  /** InventoryReserved, for notification. */
  inventoryReserved: "inventory-reserved",
  /** InventoryFailed, for notification. */
  inventoryFailed: "inventory-failed",
  /** Both inventory outcomes, for the order service to update each order's status. */
  orderStatus: "order-status",
} as const;
export type Queue = typeof Queue[keyof typeof Queue];

const BINDINGS: Record<Queue, EventType[]> = {
  [Queue.orderPlaced]: [EventType.OrderPlaced],
  [Queue.inventoryReserved]: [EventType.InventoryReserved],
  [Queue.inventoryFailed]: [EventType.InventoryFailed],
  [Queue.orderStatus]: [EventType.InventoryReserved, EventType.InventoryFailed],
};

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

/**
 * Declares the exchanges, the quorum queues with their bindings and delivery limit, and their DLQs.
 *
 * Quorum queues count deliveries, so a message that crashes its consumer every time is
 * dead-lettered after {@linkcode DELIVERY_LIMIT} attempts instead of looping forever.
 *
 * @throws {Error} saying which queue exists with other arguments and what to do about it
 */
export async function declareTopology(channel: DeclaringChannel): Promise<void> {
  await channel.assertExchange(EXCHANGE, "topic", { durable: true });
  await channel.assertExchange(DEAD_LETTER_EXCHANGE, "direct", { durable: true });
  for (const queue of QUEUES) {
    const dlq = deadLetterQueue(queue);
    await assertQueue(channel, dlq, { "x-queue-type": "quorum" });
    await channel.bindQueue(dlq, DEAD_LETTER_EXCHANGE, queue);
    await assertQueue(channel, queue, {
      "x-queue-type": "quorum",
      "x-delivery-limit": DELIVERY_LIMIT,
      "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
      "x-dead-letter-routing-key": queue,
    });
    for (const eventType of BINDINGS[queue]) await channel.bindQueue(queue, EXCHANGE, eventType);
  }
}

async function assertQueue(
  channel: DeclaringChannel,
  queue: string,
  args: Record<string, unknown>,
): Promise<void> {
  try {
    await channel.assertQueue(queue, { durable: true, arguments: args });
  } catch (cause) {
    if (!String((cause as Error)?.message).includes("PRECONDITION_FAILED")) throw cause;
    throw new Error(
      `Cannot declare queue "${queue}" as it already exists with other arguments (this version ` +
        `needs a quorum queue with ${JSON.stringify(args)}): drain it and delete it, ` +
        `or move its messages with a shovel, then restart`,
      { cause },
    );
  }
}
