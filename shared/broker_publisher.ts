/**
 * Publishing to the broker with confirms: a publish resolves only once the broker confirmed every
 * message, and rejects when one is nacked, its channel is closed, or no confirm comes in time. A
 * copy of a delivery (to a retry queue, to a DLQ) is published the same way.
 * @module
 */
import { Buffer } from "node:buffer";
import type { Options } from "amqplib";
import type { Delivery } from "./delivery.ts";
import type { Logger } from "./log.ts";
import { BrokerTimeoutError, withDeadline } from "./broker_deadline.ts";
import { type BrokerLink, closeConnectionWith } from "./broker_connection.ts";

/** A message to publish, persistent and as JSON. */
export interface OutgoingMessage {
  exchange: string;
  routingKey: string;
  body: string | Uint8Array;
  messageId: string;
  correlationId?: string;
  type?: string;
  /** Milliseconds since the epoch. @default {now} */
  timestamp?: number;
  headers?: Record<string, unknown>;
  /**
   * The broker user the message says published it, which the broker checks: another than the
   * connection's own needs the `impersonator` tag. @default {the connection's user}
   */
  userId?: string;
}

/** What publishing needs of an amqplib confirm channel. */
export interface PublisherChannel {
  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    confirmed: (error: unknown) => void,
  ): boolean;
  close(): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** Options of {@linkcode Publisher.open}. */
export interface PublisherOptions {
  log: Logger;
  /** How long the broker may take to confirm a publish or open a channel, in milliseconds. */
  replyTimeoutMs: number;
  /** The broker user every message says published it unless it names another. */
  user: string;
}

/** The publishing channel of one connection, replaced when the broker nacks on it. */
export class Publisher {
  #link: BrokerLink;
  #options: PublisherOptions;
  #channel?: PublisherChannel;
  /** Set while a nacked channel is being replaced. */
  #replacing?: Promise<void>;

  private constructor(link: BrokerLink, options: PublisherOptions) {
    this.#link = link;
    this.#options = options;
  }

  /** Opens a publisher on `link`'s connection. */
  static async open(link: BrokerLink, options: PublisherOptions): Promise<Publisher> {
    const publisher = new Publisher(link, options);
    await publisher.#openChannel();
    return publisher;
  }

  /** Publishes `messages` and resolves once the broker confirmed every one; rejects if any failed. */
  async publish(messages: readonly OutgoingMessage[]): Promise<void> {
    const channel = this.#channel!;
    const confirms = messages.map((message) =>
      new Promise<void>((resolve, reject) => {
        try {
          channel.publish(message.exchange, message.routingKey, Buffer.from(message.body), {
            persistent: true,
            contentType: "application/json",
            messageId: message.messageId,
            correlationId: message.correlationId,
            type: message.type,
            userId: message.userId ?? this.#options.user,
            timestamp: Math.floor((message.timestamp ?? Date.now()) / 1000),
            headers: message.headers,
          }, (error) => {
            if (!error) return resolve();
            this.#replace(channel);
            reject(new Error("Broker did not confirm the publish", { cause: error }));
          });
        } catch (error) {
          reject(new Error("Cannot publish as the channel is closed", { cause: error }));
        }
      })
    );
    try {
      await withDeadline(Promise.all(confirms), this.#options.replyTimeoutMs, "confirm a publish");
    } catch (error) {
      // A channel that stops confirming is broken (a node lost mid-publish can leave it so): the
      // rows stay in the outbox and go out again on the next connection. While the broker blocks
      // publishing on purpose, a late confirm is expected and the connection is kept.
      if (error instanceof BrokerTimeoutError && !this.#link.blocked) this.#link.abandon();
      throw error;
    }
  }

  /** Closes the channel, which lets amqplib send what it still buffers; never rejects. */
  close(): Promise<void> {
    return this.#channel?.close().catch(() => {}) ?? Promise.resolve();
  }

  /** Opens a confirm channel; the one it replaces may close without closing the connection. */
  async #openChannel(): Promise<void> {
    const { connection } = this.#link;
    const channel = await connection.createConfirmChannel();
    closeConnectionWith(channel, connection, {
      log: this.#options.log,
      closedByUs: () => channel !== this.#channel,
    });
    this.#channel = channel;
  }

  /**
   * Replaces the channel after it was nacked. A channel that publishes to a quorum queue in the
   * moment its leader's node dies can be nacked, and then nacked again for every publish for as
   * long as that node is down, while a new channel is confirmed at once.
   */
  #replace(nacked: PublisherChannel): void {
    if (this.#channel !== nacked || this.#replacing) return;
    this.#options.log.warn("broker nacked a publish, publishing on a new channel", {
      node: this.#link.node,
    });
    this.#replacing = withDeadline(
      this.#openChannel(),
      this.#options.replyTimeoutMs,
      "open a channel",
    )
      .then(() => nacked.close().catch(() => {}), () => this.#link.abandon())
      .finally(() => this.#replacing = undefined);
  }
}

/** Options of {@linkcode copyOf}. */
export interface CopyOptions {
  /** Headers of the delivery the copy leaves out, besides those no copy carries. */
  dropHeaders?: readonly string[];
  /** The broker user the copy says published it. @default {the connection's user} */
  userId?: string;
}

/**
 * The copy of `delivery` (body, properties and headers) to publish to `to`, with `headers` added:
 * how a consumer parks a message in a retry queue or a DLQ.
 */
export function copyOf(
  delivery: Delivery,
  to: { exchange: string; routingKey: string; headers: Record<string, unknown> },
  options: CopyOptions = {},
): OutgoingMessage {
  const kept = { ...delivery.headers };
  for (const name of [...NOT_COPIED, ...options.dropHeaders ?? []]) delete kept[name];
  return {
    exchange: to.exchange,
    routingKey: to.routingKey,
    body: delivery.body,
    messageId: delivery.messageId ?? "",
    correlationId: delivery.correlationId,
    type: delivery.type,
    timestamp: delivery.timestamp,
    headers: { ...kept, ...to.headers },
    userId: options.userId,
  };
}

/**
 * The headers a copy drops: the count its queue keeps, and the sender-selected destinations, which
 * a copy of a neighbour's message must not carry to more queues than the one it is sent to.
 */
const NOT_COPIED = ["x-delivery-count", "CC", "BCC"];
