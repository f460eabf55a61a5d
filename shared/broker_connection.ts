/**
 * The connection to the broker, kept open for the life of the service: connected in the background
 * to one node of a cluster (with heartbeats, and TLS for `amqps://`), set up (the publisher, the
 * topology, the consumers), and after any loss connected again, to the next node first, with a
 * backoff once a whole round of nodes failed. A certificate that no retry can cure stops it instead.
 * @module
 */
import amqp from "amqplib";
import type { ConsumerChannel } from "./broker_consumer.ts";
import type { PublisherChannel } from "./broker_publisher.ts";
import { openedWithDeadline, withDeadline } from "./broker_deadline.ts";
import { backoffDelayMs, failureStreak } from "./backoff.ts";
import {
  ensureTopology,
  type EnsureTopologyOptions,
  type TopologyChannel,
  TopologyMismatchError,
  TopologyMissingError,
} from "./topology.ts";
import { describeError, type Logger } from "./log.ts";
import { redact } from "./redact.ts";
import { gauges } from "./metrics.ts";
import { delay } from "./delay.ts";

/** Listening to an amqplib connection or channel, which are event emitters. */
interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** What the broker modules need of an amqplib connection (a `ChannelModel`). */
export interface AmqpConnection extends Emitter {
  createChannel(): Promise<ConsumerChannel & TopologyChannel>;
  createConfirmChannel(): Promise<PublisherChannel>;
  close(): Promise<void>;
}

/** Opens an amqplib connection: `amqp.connect`, or a fake in tests. */
export type Connect = (
  url: string,
  socketOptions: Record<string, unknown>,
) => Promise<AmqpConnection>;

/** One open connection to one node, for as long as it lasts. */
export interface BrokerLink {
  readonly connection: AmqpConnection;
  /** The node's `host:port`, for logs and metrics. */
  readonly node: string;
  /** True while the broker holds back publishes (a resource alarm): confirms are late, not lost. */
  readonly blocked: boolean;
  /** Gives the connection up (closing it in the background) so that the service reconnects. */
  abandon(): void;
}

/** Options for `connectBroker`. */
export interface BrokerOptions {
  log: Logger;
  /** Shown in the management UI's connection list. */
  connectionName: string;
  /** First reconnect delay in milliseconds. @default {200} */
  initialDelayMs?: number;
  /** Longest reconnect delay in milliseconds. @default {10000} */
  maxDelayMs?: number;
  /**
   * Heartbeat interval in seconds, asked of the broker unless the URL has `?heartbeat=`. A link that
   * drops packets silently is noticed after two to three intervals missed, by this client and by
   * the broker (which then redelivers what the link held unacked). @default {3}
   */
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

/** What a {@linkcode BrokerConnection} does with each link, besides declaring the topology. */
export interface LinkHooks<S> {
  /**
   * Opens what a new link needs before it counts as connected (the publisher, as consumers may
   * publish from their first delivery on); the topology is declared after it.
   */
  open(link: BrokerLink): Promise<S>;
  /** Attaches the consumers, once the link counts as connected. */
  attach(link: BrokerLink): Promise<void>;
  /** Lets go of what the lost link carried: after every loss and failed attempt. */
  lost(): void;
  /**
   * Closes what `open` opened, before the connection: amqplib drops acks still in its buffers when
   * the connection goes first. Never rejects.
   */
  close(opened: S): Promise<void>;
}

/** Options of a {@linkcode BrokerConnection}. */
export interface BrokerConnectionOptions<S> extends BrokerOptions {
  hooks: LinkHooks<S>;
  /** @default {amqplib's connect} */
  connect?: Connect;
}

/** The link in use and what its `open` hook opened on it. */
export interface CurrentLink<S> {
  link: BrokerLink;
  opened: S;
}

/**
 * Connects in the background to the broker at `urls`, one URL or the URLs of one cluster's nodes,
 * and keeps reconnecting until {@linkcode BrokerConnection.close}. The nodes are tried in a random
 * order, so that instances spread over them, and after a loss the next node is tried first; a round
 * in which none answered is followed by the backoff.
 */
export class BrokerConnection<S> {
  /** The broker user this connection logs in as. */
  readonly user: string;
  readonly #nodes: readonly string[];
  readonly #options: Required<Omit<BrokerConnectionOptions<S>, "topology">> & BrokerOptions;
  readonly #stopping = new AbortController();
  readonly #connectListeners: Array<() => void> = [];
  readonly #running: Promise<void>;
  #current?: CurrentLink<S>;
  #lastError?: string;

  constructor(urls: string | readonly string[], options: BrokerConnectionOptions<S>) {
    this.#options = {
      ...options,
      initialDelayMs: options.initialDelayMs ?? 200,
      maxDelayMs: options.maxDelayMs ?? 10_000,
      heartbeatSeconds: options.heartbeatSeconds ?? 3,
      replyTimeoutMs: options.replyTimeoutMs ?? 10_000,
      tls: options.tls ?? {},
      onFatal: options.onFatal ?? (() => Deno.exit(1)),
      connect: options.connect ?? amqp.connect,
    };
    this.#nodes = shuffle(typeof urls === "string" ? [urls] : [...urls]);
    this.user = userOf(this.#nodes[0]);
    watchBrokerNode(this.#nodes.map(nodeOf), () => this.#current?.link.node);
    this.#running = this.#keepConnected();
  }

  /** The link in use, from its set-up until its loss; undefined meanwhile. */
  get current(): CurrentLink<S> | undefined {
    return this.#current;
  }

  /** How long the broker may take to answer, in milliseconds; see {@linkcode BrokerOptions}. */
  get replyTimeoutMs(): number {
    return this.#options.replyTimeoutMs;
  }

  /** Why the last connection attempt failed, while not connected. */
  get lastError(): string | undefined {
    return this.#current ? undefined : this.#lastError;
  }

  /** Calls `listener` after every (re)connection. */
  onConnect(listener: () => void): void {
    this.#connectListeners.push(listener);
  }

  /** Stops reconnecting and closes the connection. */
  async close(): Promise<void> {
    if (this.#stopping.signal.aborted) return this.#running;
    this.#stopping.abort();
    const current = this.#current;
    if (current) {
      const { link, opened } = current;
      const closing = this.#options.hooks.close(opened).then(() => link.connection.close());
      await withDeadline(closing, this.#options.replyTimeoutMs, "close the connection")
        .catch(() => link.abandon());
    }
    await this.#running;
  }

  async #keepConnected(): Promise<void> {
    const { log, hooks, initialDelayMs, maxDelayMs, onFatal } = this.#options;
    const signal = this.#stopping.signal;
    const stopped = new Promise<undefined>((resolve) =>
      signal.addEventListener("abort", () => resolve(undefined), { once: true })
    );
    const unreachable = failureStreak(log, {
      failing: "cannot reach broker, retrying",
      recovered: "reached the broker again",
    });
    let failures = 0;
    let connectedBefore = false;
    for (let attempt = 0; !signal.aborted; attempt++) {
      const url = this.#nodes[attempt % this.#nodes.length];
      const node = nodeOf(url);
      try {
        // A stop must not wait for a connection attempt that may take until its deadline.
        const opening = this.#open(url);
        const link = await Promise.race([opening, stopped]);
        if (!link) {
          opening.then((late) => late.abandon(), () => {});
          return;
        }
        log.info(connectedBefore ? "reconnected to broker" : "connected to broker", {
          node,
          url,
          topology: link.topology,
          ...(failures ? { failed_attempts: failures } : {}),
        });
        unreachable.succeeded({ node });
        connectedBefore = true;
        failures = 0;
        this.#lastError = undefined;
        for (const listener of this.#connectListeners) listener();
        await link.ended;
        this.#current = undefined;
        if (!signal.aborted) log.warn("lost broker connection, reconnecting", { node });
      } catch (error) {
        this.#current = undefined;
        this.#lastError = redact(`${node}: ${describeError(error)}`);
        const refusal = connectedBefore ? undefined : tlsRefusal(error);
        if (refusal) {
          // A certificate no retry will change: say so once and stop, rather than loop quietly.
          log.error(
            `Cannot connect to the broker at ${node} as ${refusal}: ${describeError(error)}`,
          );
          this.#stopping.abort();
          onFatal(error as Error);
          return;
        }
        // The broker answered, but with a topology this version cannot use: an error, not an outage.
        if (error instanceof TopologyMismatchError || error instanceof TopologyMissingError) {
          if (failures === 0) log.error(error.message);
        } else unreachable.failed(this.#lastError);
        failures++;
      }
      hooks.lost();
      // The next node at once while some node of this round is untried; then the backoff.
      if (failures % this.#nodes.length !== 0) continue;
      const rounds = failures / this.#nodes.length;
      await delay(backoffDelayMs(rounds + 1, { initialDelayMs, maxDelayMs }), signal);
    }
  }

  /** Opens a connection to `url` and sets it up; resolves with the link, whose end it watches. */
  async #open(url: string): Promise<Link> {
    const { log, hooks, connect, connectionName, heartbeatSeconds, replyTimeoutMs, tls } =
      this.#options;
    const connecting = connect(withHeartbeat(url, heartbeatSeconds), {
      clientProperties: { connection_name: connectionName },
      // Without it, Nagle's algorithm holds a publish behind an ack for a delayed-ACK round.
      noDelay: true,
      timeout: replyTimeoutMs,
      // Used by amqps:// only; the host name is checked against the broker's certificate.
      ...(tls.ca ? { ca: [tls.ca] } : {}),
      ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
    });
    const connection = await openedWithDeadline(connecting, replyTimeoutMs, "open a connection");
    const link = new Link(connection, { node: nodeOf(url), log });
    const setUp = async (): Promise<void> => {
      const opened = await hooks.open(link);
      // On channels of their own: a refused declaration closes its channel, which must not be the
      // publisher's (a publisher channel's close closes the connection).
      link.topology = await ensureTopology(() => spareChannel(connection, log), {
        ...this.#options.topology,
        warn: (message) => log.warn(message),
      });
      this.#current = { link, opened };
      await hooks.attach(link);
    };
    try {
      const closed = link.ended.then(() => Promise.reject(new Error("Connection closed")));
      await withDeadline(Promise.race([setUp(), closed]), replyTimeoutMs, "set up the connection");
      return link;
    } catch (error) {
      link.abandon();
      throw error;
    }
  }
}

/** A connection to one node, watched from the moment it opens. */
class Link implements BrokerLink {
  readonly connection: AmqpConnection;
  readonly node: string;
  blocked = false;
  /** Whether this connection's user declared the topology or could only check it. */
  topology?: "declared" | "checked";
  /** Resolves when the connection closes or is given up. */
  readonly ended: Promise<void>;
  #end!: () => void;

  constructor(connection: AmqpConnection, options: { node: string; log: Logger }) {
    const { node, log } = options;
    this.connection = connection;
    this.node = node;
    this.ended = new Promise<void>((resolve) => this.#end = resolve);
    // Listened for at once: a close during the set-up must not go unnoticed.
    connection.once("close", () => this.#end());
    connection.on("error", (error) => log.warn("broker connection error", { error }));
    connection.on("blocked", (reason) => {
      this.blocked = true;
      log.warn("broker blocked publishing", { reason });
    });
    connection.on("unblocked", () => {
      this.blocked = false;
      log.info("broker unblocked publishing");
    });
  }

  abandon(): void {
    this.#end();
    // In the background: a broker that stopped answering may never confirm the close.
    this.connection.close().catch(() => {});
  }
}

/**
 * Makes a close of `channel` that its owner did not ask for (`closedByUs` says false) close
 * `connection`: a channel the broker closed (a refused ack, a failed declare) leaves the session
 * in a state only a new connection cures.
 */
export function closeConnectionWith(
  channel: Pick<Emitter, "on">,
  connection: Pick<AmqpConnection, "close">,
  options: { log: Logger; closedByUs: () => boolean },
): void {
  const { log, closedByUs } = options;
  channel.on(
    "error",
    (error) => log.warn("broker closed a channel", { error: describeError(error) }),
  );
  channel.on("close", () => {
    if (!closedByUs()) connection.close().catch(() => {});
  });
}

/** A channel for work that may close it, such as a refused declaration, on `connection`. */
async function spareChannel(connection: AmqpConnection, log: Logger): Promise<TopologyChannel> {
  const channel = await connection.createChannel();
  channel.on("error", (error) => log.debug("channel closed", { error: describeError(error) }));
  return channel;
}

/** Reports at each scrape which of `nodes` (as `host:port`) the connection uses. */
function watchBrokerNode(nodes: readonly string[], current: () => string | undefined): void {
  const name = "campus_food_broker_node_connected";
  const help = "1 for the broker node the service is connected to, 0 for the others";
  gauges([name], () => {
    const connected = current();
    return nodes.map((node) => ({
      name,
      help,
      labels: { node },
      value: node === connected ? 1 : 0,
    }));
  });
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
