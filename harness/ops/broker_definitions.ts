/**
 * The broker as services with least privilege need it, as a RabbitMQ definitions document: one
 * user per service, each allowed only what that service does, and the whole topology. The
 * `broker:setup` tool imports it or writes it to a file; the harness's secure stacks import it
 * into their vhost.
 *
 * What each service's user may do in its vhost:
 *
 * - configure: nothing. The topology is the administrator's: a service checks that it exists
 *   (passive declarations need no permission) and can delete or purge no queue.
 * - write: the exchanges it publishes to: `campus-food` for its own events, which RabbitMQ's topic
 *   permissions hold it to; `campus-food.retry`, held to its own retry queues likewise;
 *   `campus-food.dlx`, a direct exchange, so any queue's DLQ (see docs/security.md).
 * - read: the queues it consumes, and no others.
 *
 * Every service publishes with `user_id` set to its user, which the broker checks, and a consumer
 * believes an event only from the user of the service that publishes it (`shared/origin.ts`): what
 * a neighbour can still route to a queue it should not reach (a `CC` header, which RabbitMQ before
 * 4.0.3 does not hold to topic permissions; a DLQ through the direct `campus-food.dlx`) is
 * dead-lettered as an untrusted publisher's and changes nothing.
 *
 * The operator's user (`<prefix>-operator`: `deno task dlq`, `dlq:replay` and the console) may
 * watch (the `monitoring` tag), read the DLQs, tap the events on a queue of its own, and publish a
 * replay straight to a queue (the default exchange) as the user that published the original (the
 * `impersonator` tag): it can put any event into any consumed queue, so guard its password as an
 * administrator's.
 * @module
 */
import {
  DEAD_LETTER_EXCHANGE,
  deadLetterQueue,
  declareTopology,
  type DeclaringChannel,
  DEFAULT_RETRY_DELAYS_MS,
  EXCHANGE,
  QUEUES,
  RETIRED_QUEUE,
  retiredQueues,
  RETRY_EXCHANGE,
  SERVICE_ACCESS,
  type ServiceName,
  TopologyMismatchError,
} from "../../shared/topology.ts";
import type { ManagementApi } from "./management_api.ts";
import type { OPERATOR } from "../../shared/origin.ts";

/** A broker user's name and password. */
export interface BrokerUser {
  name: string;
  password: string;
}

/** Options for {@linkcode brokerDefinitions}. */
export interface DefinitionsOptions {
  vhost: string;
  /** Each service's user. */
  users: Readonly<Record<ServiceName, BrokerUser>>;
  /** The retry delays the services run with (`RETRY_DELAYS`), in milliseconds. @default {the services' default} */
  retryDelaysMs?: readonly number[];
  /** Users with every right in the vhost and the administrator tag. @default {none} */
  administrators?: readonly BrokerUser[];
  /** The user of the DLQ tool and the console; see the module doc. @default {none} */
  operator?: BrokerUser;
}

/** A RabbitMQ definitions document, as `rabbitmqctl export_definitions` writes one. */
export interface Definitions {
  users: Array<{ name: string; password: string; tags: string[] }>;
  vhosts: Array<{ name: string }>;
  permissions: Array<
    { user: string; vhost: string; configure: string; write: string; read: string }
  >;
  topic_permissions: Array<
    { user: string; vhost: string; exchange: string; write: string; read: string }
  >;
  exchanges: Array<
    {
      name: string;
      vhost: string;
      type: string;
      durable: boolean;
      auto_delete: boolean;
      internal: boolean;
      arguments: Record<string, unknown>;
    }
  >;
  queues: Array<
    {
      name: string;
      vhost: string;
      durable: boolean;
      auto_delete: boolean;
      arguments: Record<string, unknown>;
    }
  >;
  bindings: Array<
    {
      source: string;
      vhost: string;
      destination: string;
      destination_type: "queue";
      routing_key: string;
      arguments: Record<string, unknown>;
    }
  >;
}

/** A regular expression that matches exactly `names`, or nothing when there are none. */
function exactly(names: readonly string[]): string {
  if (names.length === 0) return "^$";
  return `^(${names.map(escapeRegExp).join("|")})$`;
}

function escapeRegExp(name: string): string {
  return name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * The users, permissions and topology of `options.vhost`: the topology is what
 * `declareTopology()` declares, recorded rather than sent, so that the two cannot drift apart.
 */
export async function brokerDefinitions(options: DefinitionsOptions): Promise<Definitions> {
  const { vhost, users, retryDelaysMs, administrators = [], operator } = options;
  const definitions: Definitions = {
    users: [],
    vhosts: [{ name: vhost }],
    permissions: [],
    topic_permissions: [],
    exchanges: [],
    queues: [],
    bindings: [],
  };
  const recorder: DeclaringChannel = {
    assertExchange(name, type, { durable }) {
      definitions.exchanges.push({
        name,
        vhost,
        type,
        durable,
        auto_delete: false,
        internal: false,
        arguments: {},
      });
      return Promise.resolve();
    },
    assertQueue(name, { durable, arguments: args }) {
      definitions.queues.push({ name, vhost, durable, auto_delete: false, arguments: args });
      return Promise.resolve();
    },
    bindQueue(queue, exchange, pattern) {
      definitions.bindings.push({
        source: exchange,
        vhost,
        destination: queue,
        destination_type: "queue",
        routing_key: pattern,
        arguments: {},
      });
      return Promise.resolve();
    },
  };
  await declareTopology(recorder, { retryDelaysMs });
  for (const admin of administrators) {
    definitions.users.push({ ...admin, tags: ["administrator"] });
    definitions.permissions.push({
      user: admin.name,
      vhost,
      configure: ".*",
      write: ".*",
      read: ".*",
    });
  }
  if (operator) {
    // Server-named queues: the console's tap of the events.
    const own = "amq\\.gen-.*";
    const reads = [EXCHANGE, ...QUEUES.map(deadLetterQueue)].map(escapeRegExp);
    definitions.users.push({ ...operator, tags: ["monitoring", "impersonator"] });
    definitions.permissions.push({
      user: operator.name,
      vhost,
      configure: `^${own}$`,
      write: `^(amq\\.default|${own})$`,
      read: `^(${reads.join("|")}|${own})$`,
    });
  }
  for (const service of Object.keys(SERVICE_ACCESS) as ServiceName[]) {
    const { name, password } = users[service];
    const { consumes, publishes } = SERVICE_ACCESS[service];
    const exchanges = [...publishes.length ? [EXCHANGE] : [], DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE];
    definitions.users.push({ name, password, tags: [] });
    definitions.permissions.push({
      user: name,
      vhost,
      configure: "^$",
      write: exactly(exchanges),
      read: exactly(consumes),
    });
    // Its own retry queues whatever RETRY_DELAYS says: `order-placed.retry.1s`, `….retry.500ms`.
    const retries = `${exactly(consumes).slice(0, -1)}\\.retry\\.[0-9]+m?s$`;
    for (
      const [exchange, write] of [
        [EXCHANGE, publishes.length ? exactly(publishes) : undefined],
        [RETRY_EXCHANGE, consumes.length ? retries : undefined],
      ] as const
    ) {
      // A user without a topic permission on an exchange may publish any routing key to it.
      if (write) {
        definitions.topic_permissions.push({ user: name, vhost, exchange, write, read: "^$" });
      }
    }
  }
  return definitions;
}

/**
 * Imports the definitions of `options` into the broker of `api`, whose user must be an
 * administrator: users (their passwords set anew), permissions and topology. Running it again
 * changes nothing else.
 * @throws {TopologyMismatchError} naming a queue that existed with other arguments: an import
 * leaves such a queue as it is, and the services, checking passively, cannot tell
 */
export async function setUpBroker(api: ManagementApi, options: DefinitionsOptions): Promise<void> {
  const definitions = await brokerDefinitions(options);
  await api("POST", "/api/definitions", definitions);
  const vhost = encodeURIComponent(options.vhost);
  const existing = new Map(
    (await api("GET", `/api/queues/${vhost}?columns=name,arguments`) as Array<
      { name: string; arguments: Record<string, unknown> }
    >).map((queue) => [queue.name, queue.arguments]),
  );
  if (existing.has(RETIRED_QUEUE)) await retireQueue(api, options);
  for (const queue of definitions.queues) {
    const found = existing.get(queue.name) ?? {};
    const differs = Object.entries(queue.arguments).some(([key, value]) => found[key] !== value);
    if (differs) {
      throw new TopologyMismatchError(
        `Cannot set up queue "${queue.name}" as it already exists with other arguments ` +
          `(${JSON.stringify(found)}, not ${JSON.stringify(queue.arguments)}): move its messages ` +
          `elsewhere (a shovel, or deno task dlq for a .dlq), delete it, then run this again`,
      );
    }
  }
}

/**
 * Deletes the earlier version's {@linkcode RETIRED_QUEUE} with its retry queues and DLQ, as the
 * order service of this version does where it may (see `retire()` in `shared/topology.ts`).
 * @throws {Error} saying what to wait for while an earlier order service consumes it or its retry
 * queues hold messages
 */
async function retireQueue(api: ManagementApi, options: DefinitionsOptions): Promise<void> {
  const vhost = encodeURIComponent(options.vhost);
  const [queue, ...rest] = retiredQueues(options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS);
  const depthOf = async (name: string) =>
    await api("GET", `/api/queues/${vhost}/${encodeURIComponent(name)}`).then(
      (found) => found as { messages?: number; consumers?: number },
      () => undefined,
    );
  const main = await depthOf(queue);
  if ((main?.consumers ?? 0) > 0) {
    throw new Error(
      `Cannot retire queue "${queue}" as an order service of an earlier version still consumes ` +
        `it: upgrade the order service, then run this again (docs/operations.md, Upgrading)`,
    );
  }
  for (const name of rest) {
    const depth = (await depthOf(name))?.messages ?? 0;
    if (depth > 0 && !name.endsWith(".dlq")) {
      throw new Error(
        `Cannot retire queue "${queue}" as its retry queue ${name} holds ${depth} messages: ` +
          `run this again once it is empty (docs/operations.md, Upgrading)`,
      );
    }
  }
  for (const name of [queue, ...rest]) {
    const found = await depthOf(name);
    if (!found || (name.endsWith(".dlq") && (found.messages ?? 0) > 0)) continue;
    await api("DELETE", `/api/queues/${vhost}/${encodeURIComponent(name)}`);
  }
}

/** The prefix of the broker users `deno task broker:setup` makes: `campus-food-order` and so on. */
export const USER_PREFIX = "campus-food";

/** The environment variable that holds the password of `role`'s user. */
export function passwordVariable(role: ServiceName | typeof OPERATOR): string {
  return `BROKER_${role.toUpperCase()}_PASSWORD`;
}
