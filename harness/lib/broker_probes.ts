/**
 * The AMQP probes every test and scenario use beside the HTTP ones: publish an `OrderPlaced` by
 * hand, as the original system's scripts did, or poison, read a queue's messages without taking
 * them, watch the depth of the dead-letter queues, and have the broker close the services'
 * connections.
 * @module
 */
import type { OutgoingMessage } from "../../shared/broker.ts";
import type { OrderPlaced } from "../../shared/events.ts";
import { deadLetterQueue, EventType, EXCHANGE, QUEUES } from "../../shared/topology.ts";
import { waitFor, within } from "./async.ts";
import { REQUEST_TIMEOUT_MS } from "./http_probes.ts";
import { managementApi } from "../ops/management_api.ts";
import type { Report } from "./scenario.ts";
import { SERVICES } from "./service_process.ts";
import type { Stack } from "./stack.ts";

/**
 * The message that publishes `event` under `OrderPlaced`: a parsed event as JSON, with its
 * `event_id` as message id and its order as correlation id, or bytes as they are (poison, a
 * hand-written body) with `messageId`.
 */
export function orderPlacedMessage(
  event: OrderPlaced | string | Uint8Array,
  messageId = "raw",
): OutgoingMessage {
  const raw = typeof event === "string" || event instanceof Uint8Array;
  return {
    exchange: EXCHANGE,
    routingKey: EventType.OrderPlaced,
    body: raw ? event : JSON.stringify(event),
    messageId: raw ? messageId : event.event_id,
    correlationId: raw ? undefined : event.order.order_id,
    type: EventType.OrderPlaced,
  };
}

/** Publishes {@linkcode orderPlacedMessage} on the stack's own connection, and waits for the confirm. */
export async function publishOrderPlaced(
  stack: Stack,
  event: OrderPlaced | string | Uint8Array,
  messageId?: string,
): Promise<void> {
  const message = orderPlacedMessage(event, messageId);
  await within(
    stack.broker.publish([message]),
    REQUEST_TIMEOUT_MS,
    `the broker to confirm ${message.messageId}`,
  );
}

/** Waits until `queue` of the stack's vhost holds exactly `depth` ready messages. */
export async function waitForDepth(stack: Stack, queue: string, depth: number): Promise<void> {
  await waitFor(
    `${depth} messages ready in ${queue}`,
    async () => await stack.tools.queueDepth(queue) === depth,
  );
}

/** Waits until `queues` of the stack's vhost hold no ready message. */
export async function waitQueuesEmpty(
  stack: Stack,
  queues: readonly string[] = QUEUES,
): Promise<void> {
  await waitFor(`${queues.join(", ")} to be empty`, async () => {
    const depths = await Promise.all(queues.map((queue) => stack.tools.queueDepth(queue)));
    return depths.every((depth) => depth === 0);
  });
}

/** The depth of every dead-letter queue, by name. */
export async function deadLetterDepths(stack: Stack): Promise<Record<string, number>> {
  const dlqs = QUEUES.map(deadLetterQueue);
  const depths = await Promise.all(dlqs.map((dlq) => stack.tools.queueDepth(dlq)));
  return Object.fromEntries(dlqs.map((dlq, i) => [dlq, depths[i]]));
}

/** Reports a step with the depth of every dead-letter queue, and a failure unless all are empty. */
export async function expectDeadLettersEmpty(stack: Stack, report: Report): Promise<void> {
  const depths = Object.entries(await deadLetterDepths(stack));
  report.step(`dead-letter queues: ${depths.map(([q, d]) => `${q} ${d}`).join(", ")}`);
  report.expect(
    depths.every(([, d]) => d === 0),
    "every DLQ empty",
    depths.filter(([, d]) => d > 0).map(([q, d]) => `${q} ${d}`).join(", "),
  );
}

/** A message as the management API's "get messages" returns it. */
export interface PeekedMessage {
  payload: string;
  payload_encoding: "string" | "base64";
  payload_bytes: number;
  redelivered: boolean;
  properties: { message_id?: string; headers?: Record<string, unknown> };
}

/**
 * Reads up to `count` messages of `queue` in the stack's vhost through the management API and puts
 * them back (`ack_requeue_true`), so that nothing is taken from the queue.
 */
export async function peekQueue(
  stack: Stack,
  queue: string,
  count = 100,
): Promise<PeekedMessage[]> {
  const vhost = encodeURIComponent(stack.vhost.name);
  return await managementApi(stack.managementUrl)(
    "POST",
    `/api/queues/${vhost}/${encodeURIComponent(queue)}/get`,
    { count, ackmode: "ack_requeue_true", encoding: "auto" },
  ) as PeekedMessage[];
}

/** The bytes of a peeked message's body. */
export function payloadBytes(message: PeekedMessage): Uint8Array {
  return message.payload_encoding === "base64"
    ? Uint8Array.from(atob(message.payload), (c) => c.charCodeAt(0))
    : new TextEncoder().encode(message.payload);
}

/**
 * Has the broker close the services' connections in the stack's vhost (not the harness's own),
 * as a broker restart or an operator would.
 * @returns how many it closed
 */
export async function closeServiceConnections(
  stack: Stack,
  options: { timeoutMs?: number } = {},
): Promise<number> {
  const { timeoutMs = 15_000 } = options;
  const api = managementApi(stack.managementUrl);
  // The management API lists a new connection only after its next statistics round (~5 s): wait
  // for one per service, then close what is there.
  let services: Array<{ name: string }> = [];
  await waitFor("the services' connections in the management API", async () => {
    const all = await api("GET", `/api/vhosts/${stack.vhost.name}/connections`) as Array<
      { name: string; client_properties: { connection_name?: string } }
    >;
    services = all.filter((c) => !c.client_properties.connection_name?.startsWith("harness"));
    return services.length >= SERVICES.length;
  }, { timeoutMs, intervalMs: 250 }).catch(() => {});
  for (const connection of services) {
    await api("DELETE", `/api/connections/${encodeURIComponent(connection.name)}`).catch(() => {});
  }
  return services.length;
}
