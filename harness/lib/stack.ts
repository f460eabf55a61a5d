/**
 * An isolated stack for scenarios and tests: a fresh vhost (made through the management API and
 * deleted after), a temporary data directory, and the three services as child processes on free
 * ports, each with its JSON log kept for assertions.
 * @module
 */
import { join } from "node:path";
import { type Broker, connectBroker } from "../../shared/broker.ts";
import { createLogger, type LogLevel } from "../../shared/log.ts";
import { type BrokerTools, connectBrokerTools } from "./broker_tools.ts";
// @ts-types="@types/pg"
import pg from "pg";

/**
 * How a service is run: the same flags as its task in deno.json. V8's young generation is kept to
 * 2 MB semi-spaces and its old generation capped at 128 MB (about ten times a service's live heap):
 * a busy service peaks near 100 MB rather than 160, and a leak ends in a crash and a restart rather
 * than in swap. The README's performance section has the figures.
 */
export const SERVICE_RUN_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--v8-flags=--max-semi-space-size=2,--max-old-space-size=128",
];

/** The three services. */
export type ServiceName = "order" | "inventory" | "notification";
export const SERVICES: readonly ServiceName[] = ["order", "inventory", "notification"];

const ROOT = new URL("../..", import.meta.url).pathname;
const DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/";
const DEFAULT_MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672";

/** A polling deadline for {@linkcode waitFor}. */
export interface WaitOptions {
  /** @default {15000} */
  timeoutMs?: number;
  /** @default {50} */
  intervalMs?: number;
}

/**
 * Polls `condition` until it returns a value other than `undefined` or `false`, and returns it.
 * @throws {Error} with `what` and the last value seen, when the deadline passes
 */
export async function waitFor<T>(
  what: string,
  condition: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const { timeoutMs = 15_000, intervalMs = 50 } = options;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (true) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${timeoutMs} ms waiting for ${what}: last saw ${String(last)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A vhost of its own on the broker. */
export interface Vhost {
  name: string;
  /** Its URL, or the comma-separated URLs of a cluster's nodes: what a service gets as `AMQP_URL`. */
  amqpUrl: string;
  delete(): Promise<void>;
}

/** Where a stack makes its vhost, when not on the broker of `AMQP_URL`. */
export interface BrokerAddress {
  /** One node's AMQP URL or the comma-separated URLs of a cluster's nodes; the path is replaced. */
  amqpUrl: string;
  /** The management API of that broker, credentials included. */
  managementUrl: string;
}

/**
 * Creates a uniquely named vhost that `guest` (the management URL's user) may use, on the broker of
 * `AMQP_URL` or at `options`.
 */
export async function createVhost(options: Partial<BrokerAddress> = {}): Promise<Vhost> {
  const { amqpUrl = Deno.env.get("AMQP_URL") || DEFAULT_AMQP_URL } = options;
  const api = managementApi(options.managementUrl);
  const name = `campus-food-test-${crypto.randomUUID().slice(0, 8)}`;
  const nodes = amqpUrl.split(",").map((url) => new URL(url.trim()));
  const user = nodes[0].username || "guest";
  await api("PUT", `/api/vhosts/${name}`);
  await api("PUT", `/api/permissions/${name}/${encodeURIComponent(user)}`, {
    configure: ".*",
    write: ".*",
    read: ".*",
  });
  for (const url of nodes) url.pathname = `/${name}`;
  return {
    name,
    amqpUrl: nodes.map((url) => url.toString()).join(","),
    delete: () => api("DELETE", `/api/vhosts/${name}`).then(() => {}),
  };
}

/** A call to the RabbitMQ management API: the parsed JSON answer, or undefined for an empty one. */
export type ManagementApi = (method: string, path: string, body?: unknown) => Promise<unknown>;

/** Options for {@linkcode managementApi}. */
export interface ManagementApiOptions {
  /** How long one call may take, in milliseconds: a node that hangs fails the call. @default {10000} */
  timeoutMs?: number;
}

/**
 * Calls the RabbitMQ management API at `managementUrl` (credentials in the URL).
 * @throws {Error} naming the call when the API answers an error status or not in time
 */
export function managementApi(
  managementUrl = defaultManagementUrl(),
  options: ManagementApiOptions = {},
): ManagementApi {
  const { timeoutMs = 10_000 } = options;
  const url = new URL(managementUrl);
  const auth = "Basic " +
    btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  url.username = url.password = "";
  const base = url.toString().replace(/\/$/, "");
  return async function call(method, path, body) {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: auth, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(
        `Management API ${method} ${path} answered ${response.status}: ${text.slice(0, 200)}`,
      );
    }
    return text ? JSON.parse(text) : undefined;
  };
}

function defaultManagementUrl(): string {
  return Deno.env.get("RABBITMQ_MANAGEMENT_URL") || DEFAULT_MANAGEMENT_URL;
}

/** One service running as a child process. */
export interface RunningService {
  name: ServiceName;
  /** The child's process id, for reading its memory from /proc. */
  pid: number;
  port: number;
  url: string;
  /** Every JSON log line it wrote so far. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number>;
  /** Sends `signal` (SIGTERM by default) and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Options for {@linkcode startService}. */
export interface ServiceOptions {
  /** Environment for the child, on top of this process's. */
  env: Record<string, string>;
  /** Copy each log line to this process's stdout, prefixed. @default {false} */
  echo?: boolean;
}

/** How long a service may take to start listening, in milliseconds. */
const START_TIMEOUT_MS = 30_000;

/** Starts `name/main.ts` with `options.env` and resolves once it logged the port it listens on. */
export async function startService(
  name: ServiceName,
  options: ServiceOptions,
): Promise<RunningService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...SERVICE_RUN_FLAGS,
      join(ROOT, name, "main.ts"),
    ],
    env: { LOG_FORMAT: "json", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: Array<Record<string, unknown>> = [];
  let listening: (port: number) => void;
  const port = new Promise<number>((resolve) => listening = resolve);
  const stderr: string[] = [];
  const done = Promise.all([
    readLines(child.stdout, (line) => {
      if (options.echo) console.log(`${name.padEnd(12)} | ${line}`);
      try {
        const record = JSON.parse(line);
        logs.push(record);
        if (record.msg === "listening") listening(record.port);
      } catch {
        logs.push({ msg: line });
      }
    }),
    readLines(child.stderr, (line) => {
      stderr.push(line);
      if (options.echo) console.error(`${name.padEnd(12)} ! ${line}`);
    }),
  ]);
  const exited = child.status.then(async (status) => {
    await done;
    return status.code;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tooSlow = new Promise<0>((resolve) =>
    timer = setTimeout(() => resolve(0), START_TIMEOUT_MS)
  );
  const started = await Promise.race([port, exited.then((code) => -1 - code), tooSlow]);
  clearTimeout(timer);
  if (started === 0) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(
      `${name} did not log "listening" within ${START_TIMEOUT_MS} ms: its LOG_LEVEL must be ` +
        `info or debug for the harness to learn its port`,
    );
  }
  if (started < 0) {
    throw new Error(
      `${name} exited with code ${-1 - started} before listening: ${
        stderr.join("\n").slice(-2000)
      }`,
    );
  }
  return {
    name,
    pid: child.pid,
    port: started,
    url: `http://127.0.0.1:${started}`,
    logs,
    exited,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
      return await exited;
    },
  };
}

async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) if (line) onLine(line);
  }
  if (buffered) onLine(buffered);
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
}

/** An isolated running system. */
export interface Stack {
  vhost: Vhost;
  /** The management API's URL of the broker the vhost is on. */
  managementUrl: string;
  dataDir: string;
  services: Partial<Record<ServiceName, RunningService>>;
  /** A connection of the stack's own to its vhost, for publishing and consuming as a service does. */
  broker: Broker;
  /** Taps, queue depths and browsing in the stack's vhost, on a connection of their own. */
  tools: BrokerTools;
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
  const vhost = await createVhost(options.broker);
  const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
  const services: Stack["services"] = {};
  const instances = new Set<RunningService>();
  function launch(name: ServiceName, env: Record<string, string>): Promise<RunningService> {
    return startService(name, {
      env: {
        AMQP_URL: options.servicesAmqpUrl?.(vhost.amqpUrl) ?? vhost.amqpUrl,
        DATA_DIR: dataDir,
        [`${name.toUpperCase()}_PORT`]: "0",
        ...options.env,
        ...options.serviceEnv?.[name],
        ...env,
      },
      echo: options.echo,
    });
  }
  const broker = connectBroker(vhost.amqpUrl.split(","), {
    log: createLogger("harness", { level: options.brokerLogLevel ?? "warn" }),
    connectionName: "harness",
  });
  const tools = connectBrokerTools(vhost.amqpUrl);
  const stack: Stack = {
    vhost,
    managementUrl: options.broker?.managementUrl ?? defaultManagementUrl(),
    dataDir,
    services,
    broker,
    tools,
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
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
  try {
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

/** A PostgreSQL database of its own, for a stack that runs on `DATABASE_URL`. */
export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/**
 * Creates a uniquely named database on the server of `TEST_DATABASE_URL` (default: the local
 * server as `postgres`), for one scenario or test.
 */
export async function createDatabase(): Promise<TestDatabase> {
  const adminUrl = Deno.env.get("TEST_DATABASE_URL") ||
    "postgres://postgres@127.0.0.1:5432/postgres";
  const name = `campus_food_test_${crypto.randomUUID().slice(0, 8)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}
