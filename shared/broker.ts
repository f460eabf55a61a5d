/**
 * The broker as services use it: {@linkcode connectBroker} keeps one connection open in the
 * background and offers publishing with confirms and consumers that survive reconnects. It puts
 * together the modules that hold the concepts, the only code that talks to the AMQP client:
 *
 * - `broker_connection.ts`: connecting to a cluster's nodes, the topology, reconnecting with backoff;
 * - `broker_publisher.ts`: publishing with confirms, and copying a delivery elsewhere;
 * - `broker_consumer.ts`: a consumer's channel, its batches and their settlement, its stalls.
 * @module
 */
import type { BatchHandler, Delivery } from "./delivery.ts";
import type { Queue } from "./topology.ts";
import { describeError } from "./log.ts";
import { withDeadline } from "./broker_deadline.ts";
import { BrokerConnection, type BrokerOptions, type Connect } from "./broker_connection.ts";
import { copyOf, type OutgoingMessage, Publisher } from "./broker_publisher.ts";
import { ConsumerState } from "./broker_consumer.ts";

export type { BrokerOptions } from "./broker_connection.ts";
export type { OutgoingMessage } from "./broker_publisher.ts";
/**
 * The plain {@linkcode Delivery} of an AMQP client message, as every consumer receives it: for
 * tools that read queues on a connection of their own and must hand out the same thing.
 */
export { toDelivery } from "./broker_consumer.ts";

/** The prefetch of a consumer that sets none: batches of up to 100 deliveries. */
export const DEFAULT_PREFETCH = 200;

/** Options for {@linkcode Broker.consume}. */
export interface ConsumeOptions {
  /**
   * Unacked deliveries the broker may push. A batch takes at most half of them, so that the broker
   * keeps delivering the next batch while one is handled and committed. @default {DEFAULT_PREFETCH}
   */
  prefetch?: number;
}

/** A running consumer. */
export interface Consumer {
  /** Stops taking deliveries, finishes the batch in hand, and settles it. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Stops taking deliveries and holds the unsettled ones, until `resume()`; also across a
   * reconnect, which subscribes again only once resumed.
   */
  pause(): void;
  resume(): void;
}

/** The connection to RabbitMQ, kept open in the background. */
export interface Broker {
  /** True while a connection is open and the topology declared. */
  readonly connected: boolean;
  /**
   * The queues whose consumers are not subscribed on the current connection yet: for a moment after
   * every (re)connection, during which the service is connected but not yet taking messages.
   */
  readonly unattachedQueues: readonly Queue[];
  /** The broker user this connection logs in as: every message it publishes carries it. */
  readonly user: string;
  /** Publishes `messages` and resolves once the broker confirmed every one; rejects if any failed. */
  publish(messages: OutgoingMessage[]): Promise<void>;
  /** Why the last connection attempt failed, while not connected. */
  readonly lastError?: string;
  /**
   * Publishes a copy of `delivery` (body, properties and headers) to `to`, with `headers` added, and
   * resolves once the broker confirmed it: how a consumer parks a message in a retry queue or a DLQ.
   * The copy is published by this connection's user unless `userId` says otherwise, and never
   * carries `CC` or `BCC`, which would route it to more queues than `to`.
   */
  forward(
    delivery: Delivery,
    to: { exchange: string; routingKey: string },
    headers: Record<string, unknown>,
    options?: { dropHeaders?: readonly string[]; userId?: string },
  ): Promise<void>;
  /** Consumes `queue` for as long as the broker runs, across reconnects. */
  consume(queue: Queue, handler: BatchHandler, options?: ConsumeOptions): Consumer;
  /** Calls `listener` after every (re)connection. */
  onConnect(listener: () => void): void;
  /** Stops reconnecting and closes the connection. Stop consumers first. */
  close(): Promise<void>;
}

/**
 * Connects in the background to the broker at `urls`, one URL or the URLs of one cluster's nodes,
 * and keeps reconnecting until {@linkcode Broker.close}; see {@linkcode BrokerConnection}. `connect`
 * stands in for amqplib's in unit tests.
 */
export function connectBroker(
  urls: string | readonly string[],
  options: BrokerOptions & { connect?: Connect },
): Broker {
  const { log } = options;
  const consumers: ConsumerState[] = [];
  const connection: BrokerConnection<Publisher> = new BrokerConnection(urls, {
    ...options,
    hooks: {
      open: (link) =>
        Publisher.open(link, {
          log,
          replyTimeoutMs: connection.replyTimeoutMs,
          user: connection.user,
        }),
      async attach(link) {
        for (const consumer of consumers) await consumer.attach(link.connection);
      },
      lost() {
        for (const consumer of consumers) consumer.detach();
      },
      close: (publisher) => publisher.close(),
    },
  });

  function publish(messages: OutgoingMessage[]): Promise<void> {
    const current = connection.current;
    if (!current) {
      return Promise.reject(new Error("Cannot publish as the broker is not connected"));
    }
    return current.opened.publish(messages);
  }

  return {
    get connected() {
      return connection.current !== undefined;
    },
    get unattachedQueues() {
      return consumers.filter((consumer) => !consumer.attached).map((consumer) => consumer.queue);
    },
    user: connection.user,
    publish,
    get lastError() {
      return connection.lastError;
    },
    forward(delivery, to, headers, forwardOptions = {}) {
      return publish([copyOf(delivery, { ...to, headers }, forwardOptions)]);
    },
    consume(queue, handler, consumeOptions = {}) {
      const { replyTimeoutMs } = connection;
      const consumer = new ConsumerState(queue, handler, {
        prefetch: consumeOptions.prefetch ?? DEFAULT_PREFETCH,
        replyTimeoutMs,
        log,
      });
      consumers.push(consumer);
      const current = connection.current;
      if (current) {
        const { link } = current;
        withDeadline(consumer.attach(link.connection), replyTimeoutMs, "attach a consumer")
          .catch((error) => {
            log.error("cannot start consumer, reconnecting", {
              queue,
              error: describeError(error),
            });
            link.abandon();
          });
      }
      return {
        stop: async () => {
          await consumer.stop();
          consumers.splice(consumers.indexOf(consumer) >>> 0, 1);
        },
        pause: () => consumer.pause(),
        resume: () => consumer.resume(),
      };
    },
    onConnect(listener) {
      connection.onConnect(listener);
    },
    close: () => connection.close(),
  };
}
