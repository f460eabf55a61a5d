/**
 * The broker connection: with its private half `_broker_consumer.ts`, the only code that talks to
 * the AMQP client (amqplib).
 *
 * {@linkcode connectBroker} keeps one connection open for the life of the service: it connects in the
 * background, declares the topology, (re)attaches every consumer, and after any loss reconnects
 * with capped exponential backoff and jitter. Publishing waits for the broker's confirm, and
 * consumers receive deliveries in batches that they settle together.
 * @module
 */
import amqp from "amqplib";
import type { ChannelModel, ConfirmChannel } from "amqplib";
import { closeConnectionWith, ConsumerState } from "./_broker_consumer.ts";
import type { BatchHandler, Delivery } from "./delivery.ts";
import { BrokerTimeoutError, withDeadline } from "./_broker_deadline.ts";
import { Buffer } from "node:buffer";
import {
  ensureTopology,
  type EnsureTopologyOptions,
  type Queue,
  type TopologyChannel,
  TopologyMismatchError,
  TopologyMissingError,
} from "./topology.ts";
import { describeError, type Logger } from "./log.ts";
import { redact } from "./redact.ts";
import { watchBrokerNode } from "./metrics.ts";
import { delay } from "./delay.ts";

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

/**
 * The plain {@linkcode Delivery} of an AMQP client message, as every consumer receives it: for
 * tools that read queues on a connection of their own and must hand out the same thing.
 */
export { toDelivery } from "./_broker_consumer.ts";

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

/** Options for {@linkcode connectBroker}. */
export interface BrokerOptions {
  log: Logger;
  /** Shown in the management UI's connection list. */
  connectionName: string;
  /** First reconnect delay in milliseconds. @default {200} */
  initialDelayMs?: number;
  /** Longest reconnect delay in milliseconds. @default {10000} */
  maxDelayMs?: number;
  /** Heartbeat interval in seconds, which bounds how long a dead TCP link goes unnoticed. @default {15} */
  heartbeatSeconds?: number;
  /**
   * How long the broker may take to answer: to open and set up a connection, to confirm a publish,
   * to attach a consumer. Past it the connection is given up and the next node is tried, in
   * milliseconds. @default {10000}
   */
  replyTimeoutMs?: number;
  /** What to declare, or check where the user may not declare, on every connection. */
  topology?: Omit<EnsureTopologyOptions, "warn">;
  /**
   * For `amqps://`, PEM texts: `ca`, the certificate authority to trust instead of the system's,
   * and `cert` with `key`, a client certificate to present. @default {the system's CAs, no client certificate}
   */
  tls?: { ca?: string; cert?: string; key?: string };
  /**
   * Called, instead of reconnecting, when the first connection fails in a way no retry can cure:
   * the broker's TLS certificate is not trusted, or ours is refused. @default {exit with code 1}
   */
  onFatal?: (error: Error) => void;
}

interface Session {
  connection: ChannelModel;
  publisher: ConfirmChannel;
  /** The node's `host:port`, for logs and metrics. */
  node: string;
  /** Whether this connection's user declared the topology or could only check it. */
  topology?: "declared" | "checked";
  /** True while the broker holds back publishes (a resource alarm): confirms are late, not lost. */
  blocked: boolean;
  /** Set while a nacked publisher channel is being replaced. */
  replacing?: Promise<void>;
  /** Gives the connection up (closing it in the background) so that the service reconnects. */
  abandon(): void;
}

/**
 * Connects in the background to the broker at `urls`, one URL or the URLs of one cluster's nodes,
 * and keeps reconnecting until {@linkcode Broker.close}. The nodes are tried in a random order, so
 * that instances spread over them, and after a loss the next node is tried first; a round in which
 * none answered is followed by the backoff.
 */
export function connectBroker(urls: string | readonly string[], options: BrokerOptions): Broker {
  const {
    log,
    connectionName,
    initialDelayMs = 200,
    maxDelayMs = 10_000,
    heartbeatSeconds = 15,
    replyTimeoutMs = 10_000,
    topology,
    tls = {},
    onFatal = () => Deno.exit(1),
  } = options;
  const nodes = shuffle(typeof urls === "string" ? [urls] : [...urls]);
  const user = userOf(nodes[0]);
  const consumers: ConsumerState[] = [];
  const connectListeners: Array<() => void> = [];
  const stopping = new AbortController();
  const stopped = new Promise<undefined>((resolve) =>
    stopping.signal.addEventListener("abort", () => resolve(undefined), { once: true })
  );
  let session: Session | undefined;
  let lastError: string | undefined;
  watchBrokerNode(nodes.map(nodeOf), () => session?.node);

  /** Opens a connection to `url` and sets it up; resolves with a promise of its end. */
  async function openSession(url: string): Promise<{ ended: Promise<void> }> {
    const connecting = amqp.connect(withHeartbeat(url, heartbeatSeconds), {
      clientProperties: { connection_name: connectionName },
      // Without it, Nagle's algorithm holds a publish behind an ack for a delayed-ACK round (~40 ms).
      noDelay: true,
      timeout: replyTimeoutMs,
      // Used by amqps:// only; the host name is checked against the broker's certificate.
      ...(tls.ca ? { ca: [tls.ca] } : {}),
      ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
    });
    const connection = await withDeadline(connecting, replyTimeoutMs, "open a connection")
      .catch((error) => {
        connecting.then((late) => late.close(), () => {}).catch(() => {});
        throw error;
      });
    // Listened for at once: a close during the set-up below must not go unnoticed.
    let end!: () => void;
    const ended = new Promise<void>((resolve) => end = resolve);
    connection.once("close", () => end());
    connection.on("error", (error) => log.warn("broker connection error", { error }));
    const current: Session = {
      connection,
      publisher: undefined as unknown as ConfirmChannel,
      node: nodeOf(url),
      blocked: false,
      abandon() {
        end();
        // In the background: a broker that stopped answering may never confirm the close.
        connection.close().catch(() => {});
      },
    };
    connection.on("blocked", (reason) => {
      current.blocked = true;
      log.warn("broker blocked publishing", { reason });
    });
    connection.on("unblocked", () => {
      current.blocked = false;
      log.info("broker unblocked publishing");
    });
    async function setUp(): Promise<void> {
      await openPublisher(current);
      // On channels of their own: a refused declaration closes its channel, which must not be the
      // publisher's (a publisher channel's close closes the connection).
      current.topology = await ensureTopology(() => spareChannel(connection), {
        ...topology,
        warn: (message) => log.warn(message),
      });
      // Consumers may need to publish (poison to a DLQ) from their first delivery on.
      session = current;
      for (const consumer of consumers) await consumer.attach(connection);
    }
    try {
      await withDeadline(
        Promise.race([setUp(), ended.then(() => Promise.reject(new Error("Connection closed")))]),
        replyTimeoutMs,
        "set up the connection",
      );
      return { ended };
    } catch (error) {
      current.abandon();
      throw error;
    }
  }

  /** Opens `current`'s confirm channel; the one it replaces may close without closing the rest. */
  async function openPublisher(current: Session): Promise<void> {
    const publisher = await current.connection.createConfirmChannel();
    closeConnectionWith(publisher, current.connection, log, () => publisher !== current.publisher);
    current.publisher = publisher;
  }

  /**
   * Replaces `current`'s publisher channel after it was nacked. A channel that publishes to a
   * quorum queue in the moment its leader's node dies can be nacked, and then nacked again for
   * every publish for as long as that node is down, while a new channel is confirmed at once.
   */
  function replacePublisher(current: Session, nacked: ConfirmChannel): void {
    if (current.publisher !== nacked || current.replacing) return;
    log.warn("broker nacked a publish, publishing on a new channel", { node: current.node });
    current.replacing = withDeadline(openPublisher(current), replyTimeoutMs, "open a channel")
      .then(() => nacked.close().catch(() => {}), () => current.abandon())
      .finally(() => current.replacing = undefined);
  }

  async function keepConnected(): Promise<void> {
    let failures = 0;
    let connectedBefore = false;
    for (let attempt = 0; !stopping.signal.aborted; attempt++) {
      const url = nodes[attempt % nodes.length];
      try {
        // A stop must not wait for a connection attempt that may take until its deadline.
        const opening = openSession(url);
        const opened = await Promise.race([opening, stopped]);
        if (!opened) {
          opening.then(() => session?.abandon(), () => {});
          return;
        }
        const { ended } = opened;
        log.info(connectedBefore ? "reconnected to broker" : "connected to broker", {
          node: nodeOf(url),
          url,
          topology: session?.topology,
          ...(failures ? { failed_attempts: failures } : {}),
        });
        connectedBefore = true;
        failures = 0;
        lastError = undefined;
        for (const listener of connectListeners) listener();
        await ended;
        session = undefined;
        if (!stopping.signal.aborted) {
          log.warn("lost broker connection, reconnecting", { node: nodeOf(url) });
        }
      } catch (error) {
        session = undefined;
        lastError = redact(`${nodeOf(url)}: ${describeError(error)}`);
        const refusal = connectedBefore ? undefined : tlsRefusal(error);
        if (refusal) {
          // A certificate no retry will change: say so once and stop, rather than loop quietly.
          log.error(
            `Cannot connect to the broker at ${nodeOf(url)} as ${refusal}: ${describeError(error)}`,
          );
          stopping.abort();
          onFatal(error as Error);
          return;
        }
        // Only the first failure of a streak is worth a line: a dead broker must not flood the log.
        if (failures++ === 0) {
          if (error instanceof TopologyMismatchError || error instanceof TopologyMissingError) {
            log.error(error.message);
          } else log.warn("cannot reach broker, retrying", { error: lastError });
        }
      }
      for (const consumer of consumers) consumer.detach();
      // The next node at once while some node of this round is untried; then the backoff.
      if (failures % nodes.length !== 0) continue;
      const rounds = failures / nodes.length;
      const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(rounds, 16));
      await delay(ceiling / 2 + Math.random() * ceiling / 2, stopping.signal);
    }
  }
  const running = keepConnected();

  async function publish(messages: OutgoingMessage[]): Promise<void> {
    const current = session;
    if (!current) throw new Error("Cannot publish as the broker is not connected");
    const channel = current.publisher;
    const confirms = messages.map((message) =>
      new Promise<void>((resolve, reject) => {
        try {
          channel.publish(message.exchange, message.routingKey, Buffer.from(message.body), {
            persistent: true,
            contentType: "application/json",
            messageId: message.messageId,
            correlationId: message.correlationId,
            type: message.type,
            userId: message.userId ?? user,
            timestamp: Math.floor((message.timestamp ?? Date.now()) / 1000),
            headers: message.headers,
          }, (error) => {
            if (!error) return resolve();
            replacePublisher(current, channel);
            reject(new Error("Broker did not confirm the publish", { cause: error }));
          });
        } catch (error) {
          reject(new Error("Cannot publish as the channel is closed", { cause: error }));
        }
      })
    );
    try {
      await withDeadline(Promise.all(confirms), replyTimeoutMs, "confirm a publish");
    } catch (error) {
      // A channel that stops confirming is broken (a node lost mid-publish can leave it so): the
      // rows stay in the outbox and go out again on the next connection. While the broker blocks
      // publishing on purpose, a late confirm is expected and the connection is kept.
      if (error instanceof BrokerTimeoutError && !current.blocked) current.abandon();
      throw error;
    }
  }

  /** A channel for work that may close it, such as a refused declaration, on `connection`. */
  async function spareChannel(connection: ChannelModel): Promise<TopologyChannel> {
    const channel = await connection.createChannel();
    channel.on("error", (error) => log.debug("channel closed", { error: describeError(error) }));
    return channel;
  }

  return {
    get connected() {
      return session !== undefined;
    },
    get unattachedQueues() {
      return consumers.filter((consumer) => !consumer.attached).map((consumer) => consumer.queue);
    },
    user,
    publish,
    get lastError() {
      return session ? undefined : lastError;
    },
    forward(delivery, to, headers, forwardOptions = {}) {
      const kept = { ...delivery.headers };
      for (const name of [...NOT_FORWARDED, ...forwardOptions.dropHeaders ?? []]) {
        delete kept[name];
      }
      return publish([{
        ...to,
        body: delivery.body,
        messageId: delivery.messageId ?? "",
        correlationId: delivery.correlationId,
        type: delivery.type,
        timestamp: delivery.timestamp,
        headers: { ...kept, ...headers },
        userId: forwardOptions.userId,
      }]);
    },
    consume(queue, handler, consumeOptions = {}) {
      const consumer = new ConsumerState(queue, handler, {
        prefetch: consumeOptions.prefetch ?? DEFAULT_PREFETCH,
        replyTimeoutMs,
        log,
      });
      consumers.push(consumer);
      const current = session;
      if (current) {
        withDeadline(consumer.attach(current.connection), replyTimeoutMs, "attach a consumer")
          .catch((error) => {
            log.error("cannot start consumer, reconnecting", {
              queue,
              error: describeError(error),
            });
            current.abandon();
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
      connectListeners.push(listener);
    },
    async close() {
      if (stopping.signal.aborted) return running;
      stopping.abort();
      const current = session;
      if (current) {
        // The channel first: amqplib drops acks still in its buffers when the connection goes first.
        const closing = current.publisher.close().catch(() => {}).then(() =>
          current.connection.close()
        );
        await withDeadline(closing, replyTimeoutMs, "close the connection").catch(current.abandon);
      }
      await running;
    },
  };
}

/**
 * What went wrong when a TLS handshake failed over a certificate (the broker's is not trusted: another
 * CA, expired, for another host name; or the broker refused ours), or undefined for any other error.
 */
function tlsRefusal(error: unknown): string | undefined {
  const text = describeError(error);
  if (!/certificate|unable to verify/i.test(text)) return undefined;
  return /alert/i.test(text)
    ? "it refused our TLS client certificate (see AMQP_CERT_FILE and AMQP_KEY_FILE)"
    : "its TLS certificate is not trusted (see AMQP_CA_FILE)";
}

/**
 * The headers a copy drops: the count its queue keeps, and the sender-selected destinations, which
 * a copy of a neighbour's message must not carry to more queues than the one it is sent to.
 */
const NOT_FORWARDED = ["x-delivery-count", "CC", "BCC"];

/** The broker user `url` logs in as; amqplib logs in as `guest` when it names none. */
function userOf(url: string): string {
  return decodeURIComponent(new URL(url).username) || "guest";
}

/** A node as logs and metrics name it: `host:port`, without the credentials. */
function nodeOf(url: string): string {
  const { hostname, port, protocol } = new URL(url);
  return `${hostname}:${port || (protocol === "amqps:" ? 5671 : 5672)}`;
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has("heartbeat")) parsed.searchParams.set("heartbeat", String(seconds));
  return parsed.toString();
}
