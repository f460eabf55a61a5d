/**
 * An isolated stack for tests and scenarios: a fresh vhost (made through the management API and
 * deleted after), a temporary data directory, and the three services as child processes on free
 * ports, each with its JSON log kept for assertions.
 * @module
 */
import { type Broker, connectBroker, type OutgoingMessage } from "../../shared/broker.ts";
import { brokerUserOf, OPERATOR } from "../../shared/origin.ts";
import { EventType, publisherOfType } from "../../shared/topology.ts";
import { createLogger, type LogLevel } from "../../shared/log.ts";
import { parseConfig } from "../../shared/config.ts";
import { type BrokerUser, setUpBroker } from "../ops/broker_definitions.ts";
import { HARNESS_JWT_SECRET, HARNESS_SECURE } from "./secure_mode.ts";
import { waitFor } from "./async.ts";
import { type BrokerAddress, brokerAddress } from "./broker_address.ts";
import { type BrokerTools, connectBrokerTools } from "../ops/broker_tools.ts";
import { cleanUpOnInterrupt } from "./interrupt.ts";
import { keepDeadLettering } from "./broker_check.ts";
import {
  createVhost,
  type ManagementApi,
  managementApi,
  type Vhost,
} from "../ops/management_api.ts";
import {
  type RunningService,
  type ServiceName,
  SERVICES,
  startService,
} from "./service_process.ts";

/**
 * The `Deno.test` options of a test that runs a stack: its child processes, connections and timers
 * outlive the test's own ops by design, and `close()` ends them.
 */
export const INTEGRATION = { sanitizeOps: false, sanitizeResources: false } as const;

/**
 * Registers a test named `name` that runs `fn` on a stack of its own, started with `options`, and
 * closed afterwards however `fn` ends.
 */
export function stackTest(
  name: string,
  options: StackOptions & { ignore?: boolean },
  fn: (stack: Stack) => Promise<void>,
): void {
  const { ignore = false, ...stackOptions } = options;
  Deno.test({ name, ignore, ...INTEGRATION, fn: () => withStack(stackOptions, fn) });
}

/** Options for {@linkcode startStack}. */
export interface StackOptions {
  /** Extra environment for every service. */
  env?: Record<string, string>;
  /** Extra environment per service, e.g. another `AMQP_URL` for one of them. */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Services to start now; the others can be started with `start()`. @default {all three} */
  services?: readonly ServiceName[];
  echo?: boolean;
  /**
   * Rewrites the stack's AMQP URL (its vhost included) into the one the services get: to send them
   * through a TCP proxy, say. @default {the URL as it is}
   */
  servicesAmqpUrl?: (vhostAmqpUrl: string) => string;
  /**
   * The broker to make the vhost on, e.g. a private cluster's nodes.
   * @default {the broker of AMQP_URL and RABBITMQ_MANAGEMENT_URL}
   */
  broker?: BrokerAddress;
  /**
   * What the stack's own broker connection logs (to stdout): `error` for a scenario that takes
   * broker nodes down on purpose, whose reconnects are expected. @default {"warn"}
   */
  brokerLogLevel?: LogLevel;
  /**
   * Runs the services as a hardened deployment: each as a broker user of its own that may do only
   * what it does (made in the vhost as `deno task broker:setup` makes them), and with
   * `AUTH_JWT_SECRET` set, so that their APIs want the bearer token the harness's requests carry.
   * @default {true with HARNESS_SECURE=1}
   */
  secure?: boolean;
}

/** An isolated running system. */
export interface Stack {
  vhost: Vhost;
  /** The management API's URL of the broker the vhost is on. */
  managementUrl: string;
  dataDir: string;
  services: Partial<Record<ServiceName, RunningService>>;
  /**
   * A connection of the stack's own to its vhost, for publishing and consuming as a service does.
   * An event it publishes carries the broker user of the service that publishes its type, unless
   * the message names another, so that the consumers believe it in a secure stack too (where the
   * stack's user may act as any, as an operator's may).
   */
  broker: Broker;
  /** Taps, queue depths and browsing in the stack's vhost, on a connection of their own. */
  tools: BrokerTools;
  /**
   * The AMQP URL of the harness's own connections, for a tool a test runs as an operator would:
   * the vhost's as the broker's administrator, or in a secure stack as its operator.
   */
  amqpUrl: string;
  /** True when the services run with their own broker users and want bearer tokens. */
  secure: boolean;
  /**
   * The environment the stack gives `name` (its `AMQP_URL`, with its own user in a secure stack,
   * the data directory, port 0, the token secret), for a test that starts the service itself.
   */
  envOf(name: ServiceName): Record<string, string>;
  /** The base URL of a running service. */
  url(name: ServiceName): string;
  /** Starts `name`, with `env` on top of the stack's environment (a fix, say, or a fault). */
  start(name: ServiceName, env?: Record<string, string>): Promise<RunningService>;
  stop(name: ServiceName, signal?: Deno.Signal): Promise<number>;
  /**
   * Starts one more instance of `name`, beside the one `services` holds: a competing consumer on
   * the same queues. Run several instances on a shared `DATABASE_URL`, not on SQLite files.
   * `close()` stops it with the rest.
   */
  startInstance(name: ServiceName, env?: Record<string, string>): Promise<RunningService>;
  /** Stops every service, closes the connection, deletes the vhost and the data directory. */
  close(): Promise<void>;
}

/** Starts an isolated stack; always `close()` it, also on failure. */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const { secure = HARNESS_SECURE } = options;
  if (!options.broker) await keepDeadLettering("a stack");
  const vhost = await createVhost(options.broker);
  const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
  const services: Stack["services"] = {};
  const instances = new Set<RunningService>();
  const users = secure ? serviceUsers(vhost.name) : undefined;
  const api = managementApi(options.broker?.managementUrl ?? brokerAddress().managementUrl);
  // In a secure stack, the harness's connections log in as a user that may act as any other.
  const harnessUser = secure ? await impersonator(api, vhost) : undefined;
  const harnessUrl = harnessUser ? withUser(vhost.amqpUrl, harnessUser) : vhost.amqpUrl;
  function envOf(name: ServiceName): Record<string, string> {
    const amqpUrl = users ? withUser(vhost.amqpUrl, users[name]) : vhost.amqpUrl;
    return {
      AMQP_URL: options.servicesAmqpUrl?.(amqpUrl) ?? amqpUrl,
      DATA_DIR: dataDir,
      [`${name.toUpperCase()}_PORT`]: "0",
      ...secure ? { AUTH_JWT_SECRET: HARNESS_JWT_SECRET } : {},
      ...options.env,
      ...options.serviceEnv?.[name],
    };
  }
  function launch(name: ServiceName, env: Record<string, string>): Promise<RunningService> {
    return startService(name, { env: { ...envOf(name), ...env }, echo: options.echo });
  }
  const connection = connectBroker(harnessUrl.split(","), {
    log: createLogger("harness", { level: options.brokerLogLevel ?? "warn" }),
    connectionName: "harness",
  });
  const broker = users ? publishingAsPublishers(connection, users) : connection;
  const tools = connectBrokerTools(harnessUrl);
  const managementUrl = options.broker?.managementUrl ?? brokerAddress().managementUrl;
  const stack: Stack = {
    vhost,
    managementUrl,
    dataDir,
    services,
    broker,
    tools,
    amqpUrl: harnessUrl,
    secure,
    envOf,
    url(name) {
      const service = services[name];
      if (!service) throw new Error(`Cannot reach ${name} as it is not running`);
      return service.url;
    },
    async start(name, env = {}) {
      const service = await launch(name, env);
      services[name] = service;
      return service;
    },
    async startInstance(name, env = {}) {
      const instance = await launch(name, env);
      instances.add(instance);
      instance.exited.then(() => instances.delete(instance));
      return instance;
    },
    async stop(name, signal) {
      const service = services[name];
      delete services[name];
      return service ? await service.stop(signal) : 0;
    },
    async close() {
      await Promise.all([
        ...SERVICES.map((name) => stack.stop(name)),
        ...[...instances].map((instance) => instance.stop()),
      ]);
      await tools.close();
      await broker.close();
      await vhost.delete().catch(() => {});
      for (const user of [...Object.values(users ?? {}), ...harnessUser ? [harnessUser] : []]) {
        await api("DELETE", `/api/users/${encodeURIComponent(user.name)}`).catch(() => {});
      }
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
  try {
    if (users) {
      await setUpBroker(api, { vhost: vhost.name, users, retryDelaysMs: retryDelaysOf(options) });
    }
    await waitFor("the harness to connect to the broker", () => broker.connected);
    // Every start settles before a failure is thrown, so that close() stops them all.
    const starts = await Promise.allSettled(
      (options.services ?? SERVICES).map((name) => stack.start(name)),
    );
    const failed = starts.find((start) => start.status === "rejected");
    if (failed) throw failed.reason;
    return stack;
  } catch (error) {
    await stack.close();
    throw error;
  }
}

/** A user per service, named after the vhost (users are the broker's, not the vhost's). */
function serviceUsers(vhost: string): Record<ServiceName, BrokerUser> {
  return Object.fromEntries(
    SERVICES.map((
      name,
    ) => [name, { name: brokerUserOf(name, vhost), password: crypto.randomUUID() }]),
  ) as Record<ServiceName, BrokerUser>;
}

/**
 * Makes the secure stack's own user in `vhost`: every right there, and the `impersonator` tag, so
 * that it can publish as any service, as an operator's replay does. Named as the deployment's
 * operator is (`<vhost>-operator`), so that the DLQ tool run as it knows the deployment.
 */
async function impersonator(api: ManagementApi, vhost: Vhost): Promise<BrokerUser> {
  const user = { name: brokerUserOf(OPERATOR, vhost.name), password: crypto.randomUUID() };
  const name = encodeURIComponent(user.name);
  try {
    await api("PUT", `/api/users/${name}`, { password: user.password, tags: "impersonator" });
    await api("PUT", `/api/permissions/${encodeURIComponent(vhost.name)}/${name}`, {
      configure: ".*",
      write: ".*",
      read: ".*",
    });
    return user;
  } catch (error) {
    await api("DELETE", `/api/users/${name}`).catch(() => {});
    await vhost.delete().catch(() => {});
    throw error;
  }
}

/** `broker`, publishing each event as the user of the service that publishes its type. */
function publishingAsPublishers(
  broker: Broker,
  users: Readonly<Record<ServiceName, BrokerUser>>,
): Broker {
  const eventTypes: readonly string[] = Object.values(EventType);
  return Object.assign(Object.create(broker), {
    publish(messages: OutgoingMessage[]): Promise<void> {
      return broker.publish(
        messages.map((message) =>
          message.userId === undefined && message.type && eventTypes.includes(message.type)
            ? { ...message, userId: users[publisherOfType(message.type as EventType)].name }
            : message
        ),
      );
    },
  });
}

/** `urls` (one or a cluster's, comma-separated) with `user`'s name and password. */
function withUser(urls: string, user: BrokerUser): string {
  return urls.split(",").map((text) => {
    const url = new URL(text);
    url.username = encodeURIComponent(user.name);
    url.password = encodeURIComponent(user.password);
    return url.toString();
  }).join(",");
}

/** Every retry delay the stack's services may run with, for the retry queues they need. */
function retryDelaysOf(options: StackOptions): number[] {
  const settings = [options.env, ...Object.values(options.serviceEnv ?? {})]
    .map((env) => env?.RETRY_DELAYS);
  const delays = settings.flatMap((text) =>
    parseConfig({ RETRY_DELAYS: text }, "harness").retryDelaysMs
  );
  return [...new Set(delays)];
}

/**
 * Starts an isolated stack, runs `fn` with it and closes it afterwards, also when `fn` throws and
 * when the process gets SIGINT (Ctrl-C) or SIGTERM: then it closes the stack and exits 130.
 */
export async function withStack<T>(
  options: StackOptions,
  fn: (stack: Stack) => Promise<T>,
): Promise<T> {
  // The services are started here rather than by startStack() so that, when one fails to start,
  // the others are stopped too: startStack() cannot stop a service that is still starting.
  const starting = startStack({ ...options, services: [] });
  let started: Promise<unknown> = Promise.resolve();
  // A signal can come while the stack is still starting; wait for it so that nothing is left behind.
  const forget = cleanUpOnInterrupt(async function closeInterruptedStack() {
    console.error("Interrupted: stopping the services and deleting the vhost");
    try {
      const stack = await starting;
      await started;
      await stack.close();
    } catch {
      // Nothing was started, or it is already closed.
    }
  });
  try {
    const stack = await starting;
    try {
      const starts = Promise.allSettled(
        (options.services ?? SERVICES).map((name) => stack.start(name)),
      );
      started = starts;
      const failed = (await starts).find((start) => start.status === "rejected");
      if (failed) throw failed.reason;
      return await fn(stack);
    } finally {
      await stack.close();
    }
  } finally {
    forget();
  }
}
