/**
 * An in-memory broker for unit tests of the relay and the consumer: it records what they publish
 * and forward, hands a batch to a consumer when the test says so, fails on demand as a broker that
 * nacks does, and tells a test when something it waits for has happened, without polling.
 * @module
 */
import type { Broker, OutgoingMessage } from "../broker.ts";
import type { BatchHandler, Delivery, Settlement } from "../delivery.ts";
import { EXCHANGE } from "../topology.ts";

/** A copy of a delivery that a consumer forwarded (to a retry queue or a DLQ). */
export interface Forwarded {
  delivery: Delivery;
  exchange: string;
  routingKey: string;
  headers: Record<string, unknown>;
}

/** The broker seen by the relay and the consumer, with what a test needs to drive and watch it. */
export interface FakeBroker
  extends Pick<Broker, "connected" | "user" | "publish" | "onConnect" | "consume" | "forward"> {
  connected: boolean;
  /** Every message confirmed, in order. */
  readonly published: OutgoingMessage[];
  /** How many publishes were asked for, confirmed or not. */
  readonly publishCalls: number;
  readonly forwarded: Forwarded[];
  /** While set, every publish and forward rejects with it, as one the broker nacks. */
  failure: Error | undefined;
  /** While set, publishes wait for it before they are confirmed. */
  held: Promise<void> | undefined;
  /** Calls the `onConnect` listeners, as a reconnect does. */
  reconnect(): void;
  /** Hands `batch` to the consumer of `queue` and resolves with how it settled each delivery. */
  deliver(queue: string, batch: Delivery[], channelLost?: AbortSignal): Promise<Settlement[]>;
  /** True while the consumer of `queue` is paused. */
  paused(queue: string): boolean;
  /**
   * Resolves with `condition()` once it is neither false nor undefined, as checked now and after
   * every publish, forward, pause and resume; rejects after `timeoutMs` milliseconds (5000).
   */
  until<T>(what: string, condition: () => T | false | undefined, timeoutMs?: number): Promise<T>;
}

/** Creates a connected {@linkcode FakeBroker}, logged in as `options.user` (`guest`). */
export function fakeBroker(options: { user?: string } = {}): FakeBroker {
  const consumers = new Map<string, { handler: BatchHandler; paused: boolean }>();
  const connectListeners: Array<() => void> = [];
  const waiters = new Set<() => void>();
  let publishCalls = 0;
  function changed(): void {
    for (const check of waiters) check();
  }
  const fake: FakeBroker = {
    connected: true,
    user: options.user ?? "guest",
    published: [],
    get publishCalls() {
      return publishCalls;
    },
    forwarded: [],
    failure: undefined,
    held: undefined,
    async publish(messages) {
      publishCalls++;
      changed();
      try {
        await fake.held;
        if (fake.failure) {
          throw new Error("Broker did not confirm the publish", { cause: fake.failure });
        }
        fake.published.push(...messages);
      } finally {
        changed();
      }
    },
    forward(delivery, to, headers) {
      if (!fake.failure) fake.forwarded.push({ delivery, ...to, headers });
      changed();
      return fake.failure
        ? Promise.reject(new Error("Broker did not confirm the publish", { cause: fake.failure }))
        : Promise.resolve();
    },
    onConnect(listener) {
      connectListeners.push(listener);
    },
    reconnect() {
      for (const listener of connectListeners) listener();
    },
    consume(queue, handler) {
      const consumer = { handler, paused: false };
      consumers.set(queue, consumer);
      const set = (paused: boolean) => {
        consumer.paused = paused;
        changed();
      };
      return {
        stop: () => Promise.resolve(void consumers.delete(queue)),
        pause: () => set(true),
        resume: () => set(false),
      };
    },
    deliver(queue, batch, channelLost = new AbortController().signal) {
      const consumer = consumers.get(queue);
      if (!consumer) throw new Error(`Cannot deliver as nothing consumes ${queue}`);
      return consumer.handler(batch, channelLost);
    },
    paused: (queue) => consumers.get(queue)?.paused ?? false,
    until(what, condition, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`));
        }, timeoutMs);
        function check(): void {
          const value = condition();
          if (value === false || value === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(value);
        }
        waiters.add(check);
        check();
      });
    },
  };
  return fake;
}

/** A delivery of `body` (JSON unless bytes) from the events exchange, as `type`. */
export function testDelivery(
  body: unknown,
  options: { type?: string; headers?: Record<string, unknown>; userId?: string } = {},
): Delivery {
  const { type = "TestEvent", headers = {}, userId } = options;
  return {
    body: body instanceof Uint8Array ? body : new TextEncoder().encode(JSON.stringify(body)),
    exchange: EXCHANGE,
    routingKey: type,
    messageId: (body as { event_id?: string })?.event_id,
    type,
    userId,
    contentType: "application/json",
    persistent: true,
    headers,
    redelivered: false,
  };
}
