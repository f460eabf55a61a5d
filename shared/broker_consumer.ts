/**
 * One consumer's state on the broker: its channel while connected, the deliveries waiting, the
 * batch in hand and how that batch is settled on the channel it came from (acked, or requeued), and
 * the watch for a consumer that stalled, which attaches it again, or leaves a node that has lost
 * its queue.
 * @module
 */
import type { ConsumeMessage } from "amqplib";
import type { BatchHandler, Delivery, Settlement } from "./delivery.ts";
import type { Queue } from "./topology.ts";
import { describeError, type Logger } from "./log.ts";
import { counter } from "./metrics.ts";
import { withDeadline } from "./broker_deadline.ts";
import { closeConnectionWith } from "./broker_connection.ts";

const consumerReattached = counter(
  "consumer_reattached_total",
  "Consumers attached again after receiving nothing while their queue held ready messages",
  ["queue"],
);

/** What a consumer needs of an amqplib channel. */
export interface ConsumerChannel {
  prefetch(count: number): Promise<unknown>;
  consume(
    queue: string,
    onMessage: (message: ConsumeMessage | null) => void,
  ): Promise<{ consumerTag: string }>;
  cancel(consumerTag: string): Promise<unknown>;
  checkQueue(queue: string): Promise<{ messageCount: number; consumerCount: number }>;
  ack(message: ConsumeMessage, allUpTo?: boolean): void;
  nack(message: ConsumeMessage, allUpTo?: boolean, requeue?: boolean): void;
  close(): Promise<void>;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** What a consumer needs of an amqplib connection. */
export interface ConsumerConnection {
  createChannel(): Promise<ConsumerChannel>;
  close(): Promise<void>;
}

/** Options of a {@linkcode ConsumerState}. */
export interface ConsumerStateOptions {
  prefetch: number;
  /** How long the broker may take to answer the consumer's calls, in milliseconds. */
  replyTimeoutMs: number;
  log: Logger;
  /**
   * How long an idle consumer may receive nothing while its queue holds ready messages before it
   * is attached again, in milliseconds. @default {2000}
   */
  stallMs?: number;
  /**
   * How often an idle consumer looks at its queue for messages it should have received, in
   * milliseconds. @default {1000}
   */
  stallCheckIntervalMs?: number;
}

/**
 * One consumer: its channel while connected, the deliveries waiting, and the batch in hand.
 *
 * Around a quorum queue's change of leader, a consumer can stay registered and receive nothing
 * although its queue holds ready messages. So an idle consumer looks at its queue now and then, and
 * when two looks in a row see ready messages and nothing arrived in between, it cancels itself and
 * attaches again on a new channel.
 */
export class ConsumerState {
  readonly prefetch: number;
  #options: Required<ConsumerStateOptions>;
  #channel?: ConsumerChannel;
  #consumerTag?: string;
  #waiting: Received[] = [];
  #working?: Promise<void>;
  #stopped = false;
  #paused = false;
  #connection?: ConsumerConnection;
  /** Aborts when the current channel is replaced or lost; see {@linkcode BatchHandler}. */
  #channelLost = new AbortController();
  /** The last consume or cancel sent, so that pause() and resume() take effect one at a time. */
  #subscribing: Promise<void> = Promise.resolve();
  #watchdog?: ReturnType<typeof setInterval>;
  #lastDeliveryAt = 0;
  /** When the last look saw ready messages after a quiet spell: the time of the delivery before. */
  #suspectedAt?: number;
  /** Looks in a row at which the queue counted no consumer, though this one is subscribed. */
  #uncountedLooks = 0;
  #looking = false;

  constructor(
    readonly queue: Queue,
    readonly handler: BatchHandler,
    options: ConsumerStateOptions,
  ) {
    this.#options = { stallMs: 2000, stallCheckIntervalMs: 1000, ...options };
    this.prefetch = options.prefetch;
  }

  /** True once it is subscribed on a channel of the current connection, or paused on purpose. */
  get attached(): boolean {
    return this.#channel !== undefined && (this.#paused || this.#consumerTag !== undefined);
  }

  get #log(): Logger {
    return this.#options.log;
  }

  /** Subscribes on a new channel of `connection`, in place of any channel before. */
  async attach(connection: ConsumerConnection): Promise<void> {
    if (this.#stopped) return;
    const channel = await connection.createChannel();
    this.#channelLost.abort();
    this.#channelLost = new AbortController();
    this.#channel = channel;
    // A consumer that stops or attaches again closes its old channel; that must not take the
    // connection with it.
    closeConnectionWith(channel, connection, {
      log: this.#log,
      closedByUs: () => this.#stopped || channel !== this.#channel,
    });
    await channel.prefetch(this.prefetch);
    this.#connection = connection;
    // A new channel has no subscription yet, whatever the old one had.
    this.#consumerTag = undefined;
    await this.#subscribe();
    clearInterval(this.#watchdog);
    this.#watchdog = setInterval(
      () => this.#lookForStall(connection),
      this.#options.stallCheckIntervalMs,
    );
  }

  /** Drops what the lost channel delivered: the broker redelivers it. */
  detach(): void {
    clearInterval(this.#watchdog);
    this.#channelLost.abort();
    this.#channel = undefined;
    this.#consumerTag = undefined;
    this.#waiting = [];
  }

  /**
   * Cancels the subscription, so that the broker delivers nothing more, and keeps the deliveries
   * already received, unacked: the handler settles them once it goes on. Safe to call twice.
   */
  pause(): void {
    this.#paused = true;
    this.#subscribe().catch((error) =>
      this.#log.debug("cannot cancel consumer, its channel is gone", {
        error: describeError(error),
      })
    );
  }

  /** Subscribes again after {@linkcode pause}. */
  resume(): void {
    this.#paused = false;
    const connection = this.#connection;
    this.#subscribe().catch((error) => {
      // A channel lost meanwhile is not worth a line: attach() subscribes on the next one.
      if (this.#connection !== connection) return;
      this.#log.warn("cannot resume consumer, reconnecting", { error: describeError(error) });
      connection?.close().catch(() => {});
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    const channel = this.#channel;
    await this.#subscribe().catch(() => {});
    await this.#working;
    this.detach();
    await channel?.close().catch(() => {});
  }

  /** Consumes or cancels, so that the channel's subscription matches the wanted state. */
  #subscribe(): Promise<void> {
    const next = this.#subscribing.then(async () => {
      const channel = this.#channel;
      const connection = this.#connection;
      if (!channel || !connection) return;
      const { replyTimeoutMs } = this.#options;
      const wanted = !this.#paused && !this.#stopped;
      if (!wanted && this.#consumerTag) {
        const consumerTag = this.#consumerTag;
        this.#consumerTag = undefined;
        await withDeadline(channel.cancel(consumerTag), replyTimeoutMs, "cancel a consumer");
      } else if (wanted && !this.#consumerTag) {
        const { consumerTag } = await channel.consume(this.queue, (message) => {
          if (message === null) {
            // The broker cancelled us (the queue was deleted): start over on a new connection.
            this.#log.warn("broker cancelled consumer, reconnecting", { queue: this.queue });
            connection.close().catch(() => {});
            return;
          }
          this.#lastDeliveryAt = Date.now();
          this.#waiting.push({ delivery: toDelivery(message), message, channel });
          this.#work();
        });
        if (this.#channel !== channel) return;
        this.#consumerTag = consumerTag;
        this.#lastDeliveryAt = Date.now();
        this.#suspectedAt = undefined;
        this.#uncountedLooks = 0;
      }
    });
    this.#subscribing = next.catch(() => {});
    return next;
  }

  async #lookForStall(connection: ConsumerConnection): Promise<void> {
    const channel = this.#channel;
    const idle = !this.#working && this.#waiting.length === 0;
    const quietMs = Date.now() - this.#lastDeliveryAt;
    // A paused consumer receives nothing on purpose.
    if (!channel || !idle || this.#paused || this.#looking || quietMs < this.#options.stallMs) {
      return;
    }
    this.#looking = true;
    const { replyTimeoutMs } = this.#options;
    try {
      const { messageCount, consumerCount } = await withDeadline(
        channel.checkQueue(this.queue),
        replyTimeoutMs,
        "check a consumed queue",
      );
      if (channel !== this.#channel || this.#working || this.#waiting.length > 0) return;
      // A quorum queue's counts come from its leader, and a node that cannot reach the leader (cut
      // off from it by a partition) answers 0 and 0 after a quarter of a second. This consumer is
      // subscribed, so a queue that counts no consumer, twice in a row, is lost to this node:
      // leave it for another, where the queue's leader is within reach.
      this.#uncountedLooks = consumerCount === 0 && this.#consumerTag
        ? this.#uncountedLooks + 1
        : 0;
      if (this.#uncountedLooks >= 2) {
        this.#log.warn("consumed queue counts no consumer, leaving this node", {
          queue: this.queue,
        });
        connection.close().catch(() => {});
        return;
      }
      if (messageCount === 0 || this.#suspectedAt !== this.#lastDeliveryAt) {
        this.#suspectedAt = messageCount === 0 ? undefined : this.#lastDeliveryAt;
        return;
      }
      this.#log.warn(
        "consumer receives nothing although its queue holds messages, attaching again",
        {
          queue: this.queue,
          ready: messageCount,
          quiet_ms: quietMs,
        },
      );
      consumerReattached.inc({ queue: this.queue });
      this.#channel = undefined;
      clearInterval(this.#watchdog);
      await withDeadline(channel.close(), replyTimeoutMs, "close a stalled consumer's channel")
        .catch(() => {});
      await withDeadline(this.attach(connection), replyTimeoutMs, "attach a consumer again");
    } catch (error) {
      // The broker does not answer this consumer: start over on a new connection.
      this.#log.warn("consumer's channel does not answer, reconnecting", {
        queue: this.queue,
        error: describeError(error),
      });
      connection.close().catch(() => {});
    } finally {
      this.#looking = false;
    }
  }

  #work(): void {
    this.#working ??= (async () => {
      while (this.#waiting.length > 0) {
        // Half the prefetch: the other half streams in meanwhile instead of waiting for the ack.
        const batch = this.#waiting.splice(0, Math.ceil(this.prefetch / 2));
        const channelLost = this.#channelLost.signal;
        let settlements: Settlement[];
        try {
          settlements = await this.handler(batch.map((received) => received.delivery), channelLost);
        } catch (error) {
          this.#log.error("batch handler failed, requeueing", {
            queue: this.queue,
            error: describeError(error),
          });
          settlements = batch.map(() => ({ action: "requeue", error: describeError(error) }));
        }
        settle(batch, settlements, this.#log);
      }
      this.#working = undefined;
    })();
  }
}

/** A delivery and where it came from: what settling it needs. */
interface Received {
  delivery: Delivery;
  message: ConsumeMessage;
  channel: ConsumerChannel;
}

/**
 * Acks or requeues each delivery on the channel it came from. A whole-ack batch is one `multiple`
 * ack. Dead-lettered deliveries were already republished to their DLQ, so they are acked here.
 */
function settle(batch: Received[], settlements: Settlement[], log: Logger): void {
  try {
    const last = batch[batch.length - 1];
    if (
      settlements.every((s) => s.action !== "requeue") &&
      batch.every((received) => received.channel === last.channel)
    ) {
      last.channel.ack(last.message, true);
      return;
    }
    batch.forEach(({ message, channel }, i) => {
      if (settlements[i].action === "requeue") channel.nack(message, false, true);
      else channel.ack(message);
    });
  } catch (error) {
    // The channel died with the batch in hand: the broker redelivers it and the inbox absorbs it.
    log.warn("cannot settle batch as the channel is closed", { error: describeError(error) });
  }
}

/** The plain fields of `message`: what handlers see of it. */
export function toDelivery(message: ConsumeMessage): Delivery {
  const { properties, fields, content } = message;
  return {
    body: new Uint8Array(content.buffer, content.byteOffset, content.byteLength),
    exchange: fields.exchange,
    routingKey: fields.routingKey,
    messageId: properties.messageId,
    correlationId: properties.correlationId,
    type: properties.type,
    userId: properties.userId,
    contentType: properties.contentType,
    persistent: properties.deliveryMode === 2,
    timestamp: properties.timestamp ? properties.timestamp * 1000 : undefined,
    headers: properties.headers ?? {},
    redelivered: fields.redelivered,
  };
}
