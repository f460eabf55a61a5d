/**
 * `deno task dlq` lists what sits in each `.dlq`; `deno task dlq:replay` sends it back.
 *
 * Listing takes the messages without settling them and lets them go again, so nothing is lost or
 * reordered. Replay republishes each chosen message to the queue it was dead-lettered from, and to
 * no other (through the default exchange, without `CC`/`BCC`), with publisher confirms, and removes
 * it from its DLQ only after the confirm. A message whose event type that queue does not take stays
 * where it is. A replay is published as the broker user that published the original (see
 * `shared/origin.ts`), so that it is believed exactly as much as the original was: that takes a
 * broker user tagged `impersonator`, such as the operator user of `deno task broker:setup`. A
 * replayed event that was handled before is absorbed by the consumer's inbox, so replaying twice
 * changes nothing twice.
 *
 * ```sh
 * deno task dlq [--queue order-placed] [--json]
 * deno task dlq:replay [--queue order-placed] [--message-id ID]... [--json]
 * ```
 * @module
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../../shared/config.ts";
import { type Broker, connectBroker } from "../../shared/broker.ts";
import type { Delivery } from "../../shared/delivery.ts";
import { createLogger, describeError } from "../../shared/log.ts";
import { redact } from "../../shared/redact.ts";
import {
  deadLetterQueue,
  type EventType,
  eventTypesOf,
  type Queue,
  QUEUES,
} from "../../shared/topology.ts";
import {
  brokerUserOf,
  OPERATOR,
  prefixOf,
  PUBLISHED_BY_HEADER,
  publisherOf,
} from "../../shared/origin.ts";
import { USER_PREFIX } from "./broker_definitions.ts";
import { RETRY_ATTEMPT_HEADER } from "../../shared/consumer.ts";
import { replayTraced } from "../../shared/tracing.ts";
import { waitFor } from "../lib/async.ts";
import { type BrokerTools, connectBrokerTools } from "./broker_tools.ts";

/** What `deno task dlq` shows of one dead-lettered message. */
export interface DeadLetter {
  queue: string;
  message_id: string;
  reason: string;
  attempts: number;
  first_failed_at: string;
  order_id: string;
  routing_key: string;
  /** The event type it claims: its `type` property, else its body's `event_type`. */
  event_type: string;
  /**
   * The broker user that published it, as far as the broker vouches for it (see `origin.ts`), in
   * the deployment of the tool's own user; `""` when it carries none.
   */
  published_by: string;
  /** Whether replay sends it back: only when its queue takes its event type. */
  replayable: boolean;
  /** The body's first 80 characters, as a JSON string. */
  preview: string;
  /** The whole body, as text. */
  body: string;
}

/** The parts of the headers RabbitMQ writes when it dead-letters a message itself. */
interface Death {
  reason?: string;
  count?: number;
  time?: Date | { value?: number };
  "routing-keys"?: string[];
}

function firstDeath(message: Delivery): Death | undefined {
  const deaths = message.headers["x-death"];
  return Array.isArray(deaths) ? deaths.at(-1) as Death : undefined;
}

/**
 * Describes a dead-lettered message of the DLQ of `queue`, as seen by a tool of the deployment of
 * `prefix` (see `origin.ts`; undefined where the services share one broker user).
 */
export function describeDeadLetter(
  queue: Queue,
  message: Delivery,
  prefix?: string,
): DeadLetter {
  const { headers } = message;
  const death = firstDeath(message);
  const text = new TextDecoder().decode(message.body);
  const eventType = message.type ?? eventTypeOf(text);
  const deathTime = death?.time instanceof Date
    ? death.time.toISOString()
    : death?.time?.value
    ? new Date(death.time.value * 1000).toISOString()
    : "";
  return {
    queue,
    message_id: message.messageId ?? "",
    reason: String(headers["x-rejected-reason"] ?? death?.reason ?? "unknown"),
    attempts: Number(headers["x-attempts"] ?? death?.count ?? 1),
    first_failed_at: String(headers["x-rejected-at"] ?? deathTime),
    order_id: message.correlationId ?? orderIdOf(text),
    routing_key: originalRoutingKey(message),
    event_type: eventType,
    published_by: publisherOf(message, queue, prefix) ?? "",
    replayable: eventTypesOf(queue).includes(eventType as EventType),
    preview: JSON.stringify(text.length > 80 ? text.slice(0, 80) + "…" : text),
    body: text,
  };
}

function eventTypeOf(text: string): string {
  try {
    return String(JSON.parse(text)?.event_type ?? "");
  } catch {
    return "";
  }
}

function orderIdOf(text: string): string {
  try {
    const body = JSON.parse(text);
    return String(body?.order_id ?? body?.order?.order_id ?? "");
  } catch {
    return "";
  }
}

/** The routing key the message had before it was dead-lettered. */
function originalRoutingKey(message: Delivery): string {
  return String(
    message.headers["x-original-routing-key"] ?? firstDeath(message)?.["routing-keys"]?.[0] ??
      message.type ?? "",
  );
}

/** Options for {@linkcode replayDeadLetters} and {@linkcode listDeadLetters}. */
export interface DeadLetterOptions {
  /** Only the DLQ of these queues. @default {every queue} */
  queues?: readonly Queue[];
  /** Only these message ids. @default {every message} */
  messageIds?: readonly string[];
  /** The most messages read from one DLQ. @default {10000} */
  limit?: number;
}

/** Lists the messages in the DLQs, oldest first per queue, and leaves them where they are. */
export async function listDeadLetters(
  tools: BrokerTools,
  options: DeadLetterOptions = {},
): Promise<DeadLetter[]> {
  const { queues = QUEUES, limit = 10_000 } = options;
  const found: DeadLetter[] = [];
  const prefix = prefixOf(tools.user, OPERATOR);
  for (const queue of queues) {
    const browse = await tools.browse(deadLetterQueue(queue), limit);
    found.push(...browse.messages.map((message) => describeDeadLetter(queue, message, prefix)));
    await browse.close();
  }
  return found;
}

/** A broker connection to publish with confirms, and the tools to browse the DLQs. */
export interface ReplayConnections {
  broker: Broker;
  tools: BrokerTools;
}

/**
 * Republishes the chosen dead letters to the queues they came from, each as the user that
 * published it, and removes each from its DLQ once the broker confirmed the republish; see the
 * module doc.
 * @returns what was replayed
 */
export async function replayDeadLetters(
  connections: ReplayConnections,
  options: DeadLetterOptions = {},
): Promise<DeadLetter[]> {
  const { broker, tools } = connections;
  const { queues = QUEUES, messageIds, limit = 10_000 } = options;
  const replayed: DeadLetter[] = [];
  const prefix = prefixOf(broker.user, OPERATOR);
  for (const queue of queues) {
    const browse = await tools.browse(deadLetterQueue(queue), limit);
    try {
      for (const message of browse.messages) {
        const letter = describeDeadLetter(queue, message, prefix);
        if (messageIds && !messageIds.includes(letter.message_id)) continue;
        if (!letter.replayable) continue;
        // The default exchange routes by queue name: to this queue, and to no other.
        const to = { exchange: "", routingKey: queue };
        const from = deadLetterQueue(queue);
        const as = letter.published_by || broker.user;
        await replayTraced(message, {
          ...to,
          from,
          forward: (traceHeaders) =>
            broker.forward(message, to, {
              "x-replayed-from": from,
              "x-replayed-at": new Date().toISOString(),
              ...traceHeaders,
            }, {
              dropHeaders: [...FAILURE_HEADERS, PUBLISHED_BY_HEADER],
              userId: as,
            }),
        }).catch((error) => {
          if (as === broker.user) throw error;
          throw new Error(
            `Cannot replay ${letter.message_id} as ${as}, who published it, unless the broker ` +
              `user ${broker.user} is tagged impersonator: run as the operator's user ` +
              `(${brokerUserOf(OPERATOR, USER_PREFIX)}, made by deno task broker:setup)`,
            { cause: error },
          );
        });
        browse.ack(message);
        replayed.push(letter);
      }
    } finally {
      await browse.close();
    }
  }
  return replayed;
}

/** A replayed message starts afresh: a full retry budget, no stale reason. */
const FAILURE_HEADERS = [
  "x-death",
  "x-first-death-exchange",
  "x-first-death-queue",
  "x-first-death-reason",
  "x-rejected-reason",
  "x-rejected-at",
  "x-attempts",
  "x-last-error",
  RETRY_ATTEMPT_HEADER,
];

function printTable(letters: DeadLetter[]): void {
  if (letters.length === 0) {
    console.log("No dead letters.");
    return;
  }
  for (const letter of letters) {
    console.log(
      `${letter.queue}.dlq  ${letter.message_id || "(no id)"}  order=${letter.order_id || "-"}  ` +
        `attempts=${letter.attempts}  first failed ${letter.first_failed_at || "-"}\n` +
        `    reason: ${letter.reason}\n    body:   ${letter.preview}`,
    );
  }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      queue: { type: "string", multiple: true },
      "message-id": { type: "string", multiple: true },
      json: { type: "boolean", default: false },
    },
  });
  const command = positionals[0] ?? "list";
  const queues = values.queue?.map((name) => name.replace(/\.dlq$/, ""));
  const unknown = queues?.find((name) => !QUEUES.includes(name as Queue));
  if (command !== "list" && command !== "replay" || unknown !== undefined) {
    console.error(
      unknown === undefined
        ? `Cannot run "${command}": use list or replay`
        : `Cannot use --queue ${unknown} as it is not one of ${QUEUES.join(", ")}`,
    );
    return 2;
  }
  const config = loadConfig("dlq");
  const broker = connectBroker(config.amqpUrls, {
    log: createLogger("dlq", { level: "error" }),
    connectionName: "dlq",
    topology: { retryDelaysMs: config.retryDelaysMs },
    tls: config.amqpTls,
  });
  const tools = connectBrokerTools(config.amqpUrls.join(","), {
    connectionName: "dlq-tools",
    tls: config.amqpTls,
  });
  try {
    const hosts = config.amqpUrls.map((url) => new URL(url).host).join(" or ");
    await waitFor(`the broker at ${hosts}`, () => broker.connected, {
      timeoutMs: 10_000,
    });
    const options = { queues: queues as Queue[] | undefined, messageIds: values["message-id"] };
    let letters: DeadLetter[];
    try {
      letters = command === "list"
        ? await listDeadLetters(tools, options)
        : await replayDeadLetters({ broker, tools }, options);
    } catch (error) {
      console.error(`Cannot ${command} the dead letters: ${redact(describeError(error))}`);
      return 1;
    }
    if (values.json) console.log(JSON.stringify({ command, count: letters.length, letters }));
    else {
      printTable(letters);
      if (command === "replay") console.log(`Replayed ${letters.length} message(s).`);
    }
    return 0;
  } finally {
    await tools.close();
    await broker.close();
  }
}

if (import.meta.main) Deno.exit(await main());
