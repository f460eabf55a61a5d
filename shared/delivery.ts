/**
 * What a consumer receives and how it answers: a delivery from a queue as plain data, the handler
 * of a batch of them, and the settlement the handler gives each. No AMQP client type shows here:
 * `broker_consumer.ts` makes the deliveries out of the client's messages and settles them on their
 * channel.
 * @module
 */

/** A message received from a queue, not yet settled. */
export interface Delivery {
  body: Uint8Array;
  /** The exchange it was published to; `""` for the default exchange. */
  exchange: string;
  routingKey: string;
  messageId?: string;
  correlationId?: string;
  type?: string;
  /** The broker user that published it, which the broker checked (see `origin.ts`). */
  userId?: string;
  contentType?: string;
  /** True when it was published persistent (delivery mode 2): it survives a broker restart. */
  persistent: boolean;
  /** When it was published, in milliseconds since the epoch (AMQP keeps whole seconds). */
  timestamp?: number;
  headers: Record<string, unknown>;
  /** True when the broker delivered it before, to this consumer or another. */
  redelivered: boolean;
}

/** What to do with one delivery once its batch is handled. */
export type Settlement =
  | { action: "ack" }
  | { action: "dead-letter"; reason: string }
  | { action: "requeue"; error: string };

/**
 * Handles a batch of deliveries and says, for each in order, how to settle it. `channelLost`
 * aborts once the channel the batch came on is gone: the broker then gives the batch to the next
 * consumer, so a copy of it published from here on (to a DLQ, a retry queue) would be a second one.
 */
export type BatchHandler = (batch: Delivery[], channelLost: AbortSignal) => Promise<Settlement[]>;
