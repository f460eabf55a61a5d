/**
 * The consuming half of `broker.ts`, private to `shared/`: one consumer's channel, its deliveries
 * taken in batches, and how a batch is settled.
 * @module
 */
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { BatchHandler, Delivery, Settlement } from "./broker.ts";
import type { Queue } from "./topology.ts";
import { describeError, type Logger } from "./log.ts";

/** One consumer: its channel while connected, the deliveries waiting, and the batch in hand. */
export class ConsumerState {
  #channel?: Channel;
  #consumerTag?: string;
  #waiting: Delivery[] = [];
  #working?: Promise<void>;
  #stopped = false;

  constructor(
    readonly queue: Queue,
    readonly handler: BatchHandler,
    readonly prefetch: number,
    readonly log: Logger,
  ) {}

  async attach(connection: ChannelModel): Promise<void> {
    if (this.#stopped) return;
    const channel = await connection.createChannel();
    // A consumer that stops closes its own channel; that must not take the connection with it.
    closeConnectionWith(channel, connection, this.log, () => this.#stopped);
    await channel.prefetch(this.prefetch);
    this.#channel = channel;
    const { consumerTag } = await channel.consume(this.queue, (message) => {
      if (message === null) {
        // The broker cancelled us (the queue was deleted): start over on a new connection.
        this.log.warn("broker cancelled consumer, reconnecting", { queue: this.queue });
        connection.close().catch(() => {});
        return;
      }
      this.#waiting.push(toDelivery(message, channel));
      this.#work();
    });
    this.#consumerTag = consumerTag;
  }

  /** Drops what the lost channel delivered: the broker redelivers it. */
  detach(): void {
    this.#channel = undefined;
    this.#waiting = [];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const channel = this.#channel;
    if (channel && this.#consumerTag) await channel.cancel(this.#consumerTag).catch(() => {});
    await this.#working;
    await channel?.close().catch(() => {});
    this.detach();
  }

  #work(): void {
    this.#working ??= (async () => {
      while (this.#waiting.length > 0) {
        // Half the prefetch: the other half streams in meanwhile instead of waiting for the ack.
        const batch = this.#waiting.splice(0, Math.ceil(this.prefetch / 2));
        let settlements: Settlement[];
        try {
          settlements = await this.handler(batch);
        } catch (error) {
          this.log.error("batch handler failed, requeueing", {
            queue: this.queue,
            error: describeError(error),
          });
          settlements = batch.map(() => ({ action: "requeue", error: describeError(error) }));
        }
        settle(batch, settlements, this.log);
      }
      this.#working = undefined;
    })();
  }
}

/**
 * Acks or requeues each delivery on the channel it came from. A whole-ack batch is one `multiple`
 * ack. Dead-lettered deliveries were already republished to their DLQ, so they are acked here.
 */
function settle(batch: Delivery[], settlements: Settlement[], log: Logger): void {
  try {
    const last = batch[batch.length - 1];
    if (
      settlements.every((s) => s.action !== "requeue") &&
      batch.every((d) => d.channel === last.channel)
    ) {
      last.channel.ack(last.raw, true);
      return;
    }
    batch.forEach((delivery, i) => {
      if (settlements[i].action === "requeue") delivery.channel.nack(delivery.raw, false, true);
      else delivery.channel.ack(delivery.raw);
    });
  } catch (error) {
    // The channel died with the batch in hand: the broker redelivers it and the inbox absorbs it.
    log.warn("cannot settle batch as the channel is closed", { error: describeError(error) });
  }
}

export function toDelivery(message: ConsumeMessage, channel: Channel): Delivery {
  const { properties, fields } = message;
  return {
    body: new Uint8Array(
      message.content.buffer,
      message.content.byteOffset,
      message.content.byteLength,
    ),
    exchange: fields.exchange,
    routingKey: fields.routingKey,
    messageId: properties.messageId,
    correlationId: properties.correlationId,
    type: properties.type,
    headers: properties.headers ?? {},
    redelivered: fields.redelivered,
    raw: message,
    channel,
  };
}

/** A channel closed by the broker (a refused ack, a failed declare) closes the whole session. */
export function closeConnectionWith(
  channel: Channel,
  connection: ChannelModel,
  log: Logger,
  closedByUs: () => boolean = () => false,
): void {
  channel.on(
    "error",
    (error) => log.warn("broker closed a channel", { error: describeError(error) }),
  );
  channel.on("close", () => {
    if (!closedByUs()) connection.close().catch(() => {});
  });
}
