/**
 * What the harness and the tools do on the broker and no service does: count the messages ready
 * in a queue, tap the traffic on some routing keys, and browse a queue without taking from it.
 *
 * They use the AMQP client directly, on a connection of their own, so that the product's broker
 * module (`shared/broker.ts`) offers the services only what the services use.
 * @module
 */
import amqp from "amqplib";
import type { Channel, ChannelModel, ConsumeMessage } from "amqplib";
import type { Delivery } from "../../shared/delivery.ts";
// The broker module's own mapping of an AMQP message to a Delivery, so that a tap or a browse hands
// out exactly what a consumer would see (and what `Broker.forward()` takes to replay it).
import { toDelivery } from "../../shared/broker.ts";
import { openedWithDeadline } from "../../shared/broker_deadline.ts";
import { EXCHANGE } from "../../shared/topology.ts";
import { sleep, within } from "../lib/async.ts";
import { redact } from "../../shared/redact.ts";

/** A copy of the traffic on some routing keys; see {@linkcode BrokerTools.tap}. */
export interface Tap {
  /** Every message received so far, in order. */
  readonly messages: Delivery[];
  close(): Promise<void>;
}

/** Messages taken from a queue and held; see {@linkcode BrokerTools.browse}. */
export interface Browse {
  readonly messages: Delivery[];
  /** Removes `message` from the queue for good. */
  ack(message: Delivery): void;
  /** Returns every message not acked to the queue, in its place. */
  close(): Promise<void>;
}

/** The broker operations of tests, scenarios and tools. */
export interface BrokerTools {
  /** The broker user the tools log in as. */
  readonly user: string;
  /** Messages ready in `queue` (not counting those delivered and unacked); rejects if it is missing. */
  queueDepth(queue: string): Promise<number>;
  /**
   * Binds a new exclusive queue to the events exchange for `routingKeys` and collects every message
   * routed there from now on: how tests watch the traffic without taking it from anyone.
   */
  tap(routingKeys: string[]): Promise<Tap>;
  /**
   * Takes up to `limit` messages of `queue` without settling them, so that they can be read, and
   * some acked; `close()` returns the rest to the queue in their order.
   */
  browse(queue: string, limit: number): Promise<Browse>;
  /** Closes the connection, and with it every tap. */
  close(): Promise<void>;
}

/** Options for {@linkcode connectBrokerTools}. */
export interface BrokerToolsOptions {
  /** Shown in the management UI's connection list. @default {"harness-tools"} */
  connectionName?: string;
  /** How long the broker may take to answer one call, in milliseconds. @default {10000} */
  timeoutMs?: number;
  /** For `amqps://`: PEM texts of the CA to trust and a client certificate, as the services take them. @default {none} */
  tls?: { ca?: string; cert?: string; key?: string };
}

/**
 * Broker tools on `amqpUrls` (one URL, or the comma-separated URLs of one cluster's nodes). The
 * connection opens at the first call, to the first node that answers, and again at the next call
 * after it was lost (a node killed, say).
 */
export function connectBrokerTools(
  amqpUrls: string,
  options: BrokerToolsOptions = {},
): BrokerTools {
  const { connectionName = "harness-tools", timeoutMs = 10_000, tls = {} } = options;
  const nodes = amqpUrls.split(",").map((url) => url.trim());
  let opening: Promise<ChannelModel> | undefined;
  let closed = false;

  async function open(): Promise<ChannelModel> {
    let lastError: unknown;
    for (const url of nodes) {
      try {
        const connecting = amqp.connect(url, {
          clientProperties: { connection_name: connectionName },
          timeout: timeoutMs,
          ...(tls.ca ? { ca: [tls.ca] } : {}),
          ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
        });
        // The socket's timeout does not cover a broker that accepts and then never answers.
        const connection = await openedWithDeadline(connecting, timeoutMs, "open a connection");
        connection.on("error", () => {});
        connection.once("close", () => opening = undefined);
        return connection;
      } catch (error) {
        lastError = error;
      }
    }
    throw new Error(`Cannot connect the broker tools to ${nodes.map(redact).join(" or ")}`, {
      cause: lastError,
    });
  }

  /** A channel of its own for one piece of work: a failed call closes only it. */
  async function channel(): Promise<Channel> {
    if (closed) throw new Error("Cannot use the broker tools as they are closed");
    opening ??= open();
    opening.catch(() => opening = undefined);
    const creating = (await opening).createChannel();
    const created = await openedWithDeadline(creating, timeoutMs, "open a channel");
    created.on("error", () => {});
    return created;
  }

  /** Messages ready in `queue`, as `checking` sees them. */
  async function readyIn(checking: Channel, queue: string): Promise<number> {
    const what = `the broker to check ${queue}`;
    return (await within(checking.checkQueue(queue), timeoutMs, what)).messageCount;
  }

  async function queueDepth(queue: string): Promise<number> {
    const checking = await channel();
    try {
      return await readyIn(checking, queue);
    } finally {
      await checking.close().catch(() => {});
    }
  }

  return {
    user: decodeURIComponent(new URL(nodes[0]).username) || "guest",
    queueDepth,
    async tap(routingKeys) {
      const tapping = await channel();
      const messages: Delivery[] = [];
      const setUp = async () => {
        const { queue } = await tapping.assertQueue("", { exclusive: true, autoDelete: true });
        for (const key of routingKeys) await tapping.bindQueue(queue, EXCHANGE, key);
        await tapping.consume(queue, (message) => {
          if (message) messages.push(toDelivery(message));
        }, { noAck: true });
      };
      // A caller polling on a timer (the console) must not wait for ever on a broker that stalls.
      await within(setUp(), timeoutMs, "the broker to open a tap").catch(async (error) => {
        await tapping.close().catch(() => {});
        throw error;
      });
      return { messages, close: () => tapping.close().catch(() => {}) };
    },
    async browse(queue, limit) {
      const browsing = await channel();
      const expected = Math.min(limit, await readyIn(browsing, queue));
      const held = new Map<Delivery, ConsumeMessage>();
      await browsing.prefetch(Math.max(1, expected));
      let received: () => void;
      const all = new Promise<void>((resolve) => received = resolve);
      if (expected > 0) {
        await browsing.consume(queue, (message) => {
          if (message) held.set(toDelivery(message), message);
          if (held.size >= expected) received();
        });
        // Someone else may take messages meanwhile: wait for what arrives, not forever.
        await Promise.race([all, sleep(5000)]);
      }
      const messages = [...held.keys()];
      const before = await readyIn(browsing, queue) + messages.length;
      let acked = 0;
      return {
        messages,
        ack(message) {
          const raw = held.get(message);
          if (!raw) throw new Error("Cannot ack a message this browse does not hold");
          browsing.ack(raw);
          acked++;
        },
        async close() {
          await browsing.close().catch(() => {});
          // The queue takes the returned messages back a moment after the close: wait for them, so
          // that whoever looks next (another listing, say) sees them all.
          const deadline = Date.now() + 5000;
          while (Date.now() < deadline && await queueDepth(queue) < before - acked) {
            await sleep(20);
          }
        },
      };
    },
    async close() {
      closed = true;
      const connection = await opening?.catch(() => undefined);
      await connection?.close().catch(() => {});
    },
  };
}
