/**
 * A fake amqplib connection and channel for unit tests of the broker modules (`broker_*.ts`,
 * `topology.ts`): a {@linkcode FakeAmqp} opens {@linkcode FakeConnection}s, or refuses to, as a
 * test says per node; their {@linkcode FakeChannel}s record what is declared, published and
 * settled, confirm or nack publishes or hold them until the test lets go, answer with the broker's
 * reply codes where a test says so, and hand messages to their consumers.
 * @module
 */
import { EventEmitter } from "node:events";
import { Buffer } from "node:buffer";
import type { ConsumeMessage, Options } from "amqplib";
import type { AmqpConnection } from "../broker_connection.ts";
import type { PublisherChannel } from "../broker_publisher.ts";

/** An AMQP reply code the broker answers with: 403 access refused, 404 not found, 406 mismatch. */
export type ReplyCode = 403 | 404 | 406;

/** A message a {@linkcode FakeChannel} was asked to publish. */
export interface FakePublish {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/** An ack or a nack a {@linkcode FakeChannel} received. */
export interface FakeSettlement {
  action: "ack" | "nack";
  deliveryTag: number;
  allUpTo: boolean;
  requeue?: boolean;
}

/** What a {@linkcode FakeChannel} does with a publish: confirm it, nack it, or hold it. */
export type ConfirmMode = "ack" | "nack" | "hold";

/** Where the broker's state lives that every channel of a connection sees. */
export interface FakeBrokerState {
  /** Every declaration, check and deletion asked for, as `"<method> <name>"`, in order. */
  readonly calls: string[];
  /** The arguments each queue was declared with. */
  readonly queueArguments: Map<string, Record<string, unknown>>;
  /** The bindings made, as `"<queue> <- <exchange> <pattern>"`. */
  readonly bindings: string[];
  /**
   * What `checkQueue` answers per queue; one declared but not listed here holds nothing and counts
   * the consumers of the channel asked.
   */
  readonly queues: Map<string, { messageCount: number; consumerCount: number }>;
  /** The reply code with which the broker refuses `"<method> <name>"`, if any. */
  refuse?: (call: string) => ReplyCode | undefined;
}

/** An error as amqplib raises it when the broker closes a channel with `code`. */
export function replyError(code: ReplyCode, call: string): Error {
  return Object.assign(new Error(`Channel closed by server: ${code} refusing ${call}`), { code });
}

/** A fake amqplib channel, confirm channel or not. */
export class FakeChannel extends EventEmitter {
  readonly published: FakePublish[] = [];
  readonly settlements: FakeSettlement[] = [];
  /** How the next publishes are confirmed. @default {"ack"} */
  confirmMode: ConfirmMode = "ack";
  prefetchCount?: number;
  closed = false;
  readonly #broker: FakeBrokerState;
  readonly #held: Array<(error: unknown) => void> = [];
  readonly #consumers = new Map<string, (message: ConsumeMessage | null) => void>();
  #nextTag = 1;

  constructor(broker: FakeBrokerState) {
    super();
    this.#broker = broker;
  }

  /** The queues consumed on this channel now. */
  get consumedQueues(): string[] {
    return [...this.#consumers.keys()].map((tag) => tag.split("#")[0]);
  }

  assertExchange(name: string, _type: string, _options: { durable: boolean }): Promise<unknown> {
    return this.#answer(`assertExchange ${name}`);
  }

  async assertQueue(
    name: string,
    options: { durable: boolean; arguments: Record<string, unknown> },
  ): Promise<unknown> {
    await this.#answer(`assertQueue ${name}`);
    this.#broker.queueArguments.set(name, options.arguments);
    return { queue: name, messageCount: 0, consumerCount: 0 };
  }

  async bindQueue(queue: string, exchange: string, pattern: string): Promise<unknown> {
    await this.#answer(`bindQueue ${queue}`);
    this.#broker.bindings.push(`${queue} <- ${exchange} ${pattern}`);
    return {};
  }

  checkExchange(name: string): Promise<unknown> {
    return this.#answer(`checkExchange ${name}`);
  }

  async checkQueue(name: string): Promise<{ messageCount: number; consumerCount: number }> {
    await this.#answer(`checkQueue ${name}`);
    return this.#broker.queues.get(name) ??
      { messageCount: 0, consumerCount: this.consumedQueues.filter((q) => q === name).length };
  }

  async deleteQueue(name: string): Promise<unknown> {
    await this.#answer(`deleteQueue ${name}`);
    this.#broker.queues.delete(name);
    return { messageCount: 0 };
  }

  prefetch(count: number): Promise<unknown> {
    this.prefetchCount = count;
    return this.#answer(`prefetch ${count}`);
  }

  async consume(
    queue: string,
    onMessage: (message: ConsumeMessage | null) => void,
  ): Promise<{ consumerTag: string }> {
    await this.#answer(`consume ${queue}`);
    const consumerTag = `${queue}#${this.#nextTag++}`;
    this.#consumers.set(consumerTag, onMessage);
    return { consumerTag };
  }

  async cancel(consumerTag: string): Promise<unknown> {
    await this.#answer(`cancel ${consumerTag}`);
    this.#consumers.delete(consumerTag);
    return { consumerTag };
  }

  ack(message: ConsumeMessage, allUpTo = false): void {
    this.#open();
    this.settlements.push({ action: "ack", deliveryTag: message.fields.deliveryTag, allUpTo });
  }

  nack(message: ConsumeMessage, allUpTo = false, requeue = true): void {
    this.#open();
    const { deliveryTag } = message.fields;
    this.settlements.push({ action: "nack", deliveryTag, allUpTo, requeue });
  }

  publish(
    ...[exchange, routingKey, content, options, confirmed]: Parameters<PublisherChannel["publish"]>
  ): boolean {
    this.#open();
    this.published.push({ exchange, routingKey, content, options });
    if (this.confirmMode === "hold") this.#held.push(confirmed);
    else queueMicrotask(() => confirmed(this.confirmMode === "nack" ? new Error("nacked") : null));
    return true;
  }

  /** Confirms the held publishes, or nacks them with `error`. */
  releaseHeld(error: unknown = null): void {
    for (const confirmed of this.#held.splice(0)) confirmed(error);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("Channel closed"));
    this.closed = true;
    this.#consumers.clear();
    this.emit("close");
    return Promise.resolve();
  }

  /** Closes the channel as the broker does when it refuses something on it. */
  closeByBroker(error: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.#consumers.clear();
    this.emit("error", error);
    this.emit("close");
  }

  /**
   * Hands `body` to this channel's consumer of `queue`, as the broker delivers a message, and
   * returns the message it handed.
   */
  deliver(
    queue: string,
    body: string,
    options: { type?: string; headers?: Record<string, unknown> } = {},
  ): ConsumeMessage {
    const entry = [...this.#consumers].find(([tag]) => tag.startsWith(`${queue}#`));
    if (!entry) throw new Error(`Cannot deliver as nothing consumes ${queue} on this channel`);
    const [consumerTag, onMessage] = entry;
    const message = fakeMessage(body, { ...options, deliveryTag: this.#nextTag++, consumerTag });
    onMessage(message);
    return message;
  }

  /** Tells this channel's consumer of `queue` that the broker cancelled it. */
  cancelByBroker(queue: string): void {
    const entry = [...this.#consumers].find(([tag]) => tag.startsWith(`${queue}#`));
    entry?.[1](null);
  }

  #open(): void {
    if (this.closed) throw new Error("Channel closed");
  }

  /** Answers `call` as the broker does: refused with a reply code, which closes the channel. */
  #answer(call: string): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error("Channel closed"));
    this.#broker.calls.push(call);
    const code = this.#broker.refuse?.(call);
    if (code === undefined) return Promise.resolve({});
    const error = replyError(code, call);
    this.closeByBroker(error);
    return Promise.reject(error);
  }
}

/** A fresh {@linkcode FakeBrokerState}, refusing what `refuse` says. */
export function fakeBrokerState(refuse?: FakeBrokerState["refuse"]): FakeBrokerState {
  return { calls: [], queueArguments: new Map(), bindings: [], queues: new Map(), refuse };
}

/** A fake amqplib connection (`ChannelModel`). */
export class FakeConnection extends EventEmitter implements AmqpConnection {
  readonly url: string;
  readonly broker: FakeBrokerState;
  /** Every channel opened, confirm channels included, in order. */
  readonly channels: FakeChannel[] = [];
  /** How the confirm channels opened from now on confirm publishes. @default {"ack"} */
  confirmMode: ConfirmMode = "ack";
  closed = false;

  constructor(url: string, broker: FakeBrokerState = fakeBrokerState()) {
    super();
    this.url = url;
    this.broker = broker;
  }

  createChannel(): Promise<FakeChannel> {
    if (this.closed) return Promise.reject(new Error("Connection closed"));
    const channel = new FakeChannel(this.broker);
    this.channels.push(channel);
    return Promise.resolve(channel);
  }

  async createConfirmChannel(): Promise<FakeChannel> {
    const channel = await this.createChannel();
    channel.confirmMode = this.confirmMode;
    return channel;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.drop();
    return Promise.resolve();
  }

  /** Loses the connection, as a node that goes away does: every channel closes, then it. */
  drop(): void {
    if (this.closed) return;
    this.closed = true;
    for (const channel of this.channels) {
      if (channel.closed) continue;
      channel.closed = true;
      channel.emit("close");
    }
    this.emit("close");
  }
}

/** Options of {@linkcode FakeAmqp}. */
export interface FakeAmqpOptions {
  /** The error with which a connection to `url` fails, if it does. @default {none fails} */
  refuse?: (url: string) => Error | undefined;
  /** The broker state the connections share. @default {a fresh one} */
  broker?: FakeBrokerState;
}

/** Opens {@linkcode FakeConnection}s in place of amqplib's `connect`, or refuses to. */
export class FakeAmqp {
  /** The URL of every connection attempt, in order. */
  readonly attempts: string[] = [];
  /** Every connection opened, in order. */
  readonly connections: FakeConnection[] = [];
  refuse: (url: string) => Error | undefined;
  readonly broker: FakeBrokerState;

  constructor(options: FakeAmqpOptions = {}) {
    this.refuse = options.refuse ?? (() => undefined);
    this.broker = options.broker ?? fakeBrokerState();
  }

  /** Connects to `url` as amqplib's `connect` does. */
  connect = (url: string): Promise<FakeConnection> => {
    this.attempts.push(url);
    const error = this.refuse(url);
    if (error) return Promise.reject(error);
    const connection = new FakeConnection(url, this.broker);
    this.connections.push(connection);
    return Promise.resolve(connection);
  };
}

/** A message as amqplib hands it to a consumer. */
export function fakeMessage(
  body: string,
  options: {
    deliveryTag: number;
    consumerTag?: string;
    type?: string;
    headers?: Record<string, unknown>;
  },
): ConsumeMessage {
  const { deliveryTag, consumerTag = "fake", type = "TestEvent", headers = {} } = options;
  return {
    content: Buffer.from(body),
    fields: {
      deliveryTag,
      redelivered: false,
      exchange: "campus-food",
      routingKey: type,
      consumerTag,
    },
    properties: {
      contentType: "application/json",
      contentEncoding: undefined,
      headers,
      deliveryMode: 2,
      priority: undefined,
      correlationId: undefined,
      replyTo: undefined,
      expiration: undefined,
      messageId: `message-${deliveryTag}`,
      timestamp: undefined,
      type,
      userId: undefined,
      appId: undefined,
      clusterId: undefined,
    },
  };
}

/**
 * Resolves with `condition()` once it is neither false nor undefined, looking again every few
 * milliseconds; rejects, naming `what`, after `timeoutMs` milliseconds (5000).
 */
export async function eventually<T>(
  what: string,
  condition: () => T | false | undefined,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = condition();
    if (value !== false && value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
