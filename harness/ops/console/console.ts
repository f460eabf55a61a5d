/**
 * The console as one running thing: its own broker connection, the live picture, and the HTTP
 * server of the page. `main.ts` starts it alone, `deno task dev` beside the services, and the
 * browser test beside a stack.
 * @module
 */
import { connectBroker } from "../../../shared/broker.ts";
import type { AuthConfig } from "../../../shared/auth.ts";
import type { Logger } from "../../../shared/log.ts";
import { connectBrokerTools } from "../broker_tools.ts";
import { managementApi } from "../management_api.ts";
import { type Live, startLive } from "./live.ts";
import { feedPanels } from "./panel_feed.ts";
import { vhostOf } from "./probes.ts";
import { consoleApp } from "./routes.ts";
import type { Services } from "./services.ts";

/** Where the console listens, and by which names, from `CONSOLE_PORT`, `CONSOLE_HOST` and `CONSOLE_ALLOWED_HOSTS`. */
export interface ConsoleAddress {
  port: number;
  hostname: string;
  /** Names of this machine a request's `Host` may give, besides `localhost` and IP addresses. */
  allowedHosts: string[];
}

const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i;

/**
 * Reads `CONSOLE_PORT` (default 8000), `CONSOLE_HOST` (default 127.0.0.1) and
 * `CONSOLE_ALLOWED_HOSTS` (comma-separated host names, default none) from `env`.
 * @throws {RangeError} naming the variable and what it must be
 */
export function consoleAddress(env: Record<string, string | undefined>): ConsoleAddress {
  const text = env.CONSOLE_PORT?.trim() || "8000";
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) {
    throw new RangeError(
      `Cannot start the console as CONSOLE_PORT must be an integer 0-65535: current value is "${text}"`,
    );
  }
  const names = (env.CONSOLE_ALLOWED_HOSTS ?? "").split(",").map((name) => name.trim())
    .filter(Boolean);
  const bad = names.find((name) => !HOST_NAME.test(name));
  if (bad !== undefined) {
    throw new RangeError(
      `Cannot start the console as CONSOLE_ALLOWED_HOSTS must be comma-separated host names: current value is ${
        JSON.stringify(env.CONSOLE_ALLOWED_HOSTS)
      }`,
    );
  }
  return { port, hostname: env.CONSOLE_HOST?.trim() || "127.0.0.1", allowedHosts: names };
}

/** Options for {@linkcode startConsole}. */
export interface ConsoleOptions {
  /** The broker of the system, vhost included: one URL, or those of one cluster's nodes. */
  amqpUrls: readonly string[];
  /** The management API of that broker, credentials included. */
  managementUrl: string;
  services: Services;
  log: Logger;
  /** @default {8000} */
  port?: number;
  /** The address to listen on; anything but loopback lets other machines in. @default {"127.0.0.1"} */
  hostname?: string;
  /**
   * Names of this machine that a request's `Host` may give, besides `localhost`, `hostname` and
   * any IP address; other names are refused (DNS rebinding). @default {none}
   */
  allowedHosts?: readonly string[];
  /** The retry queues' delays, as the services declare them, in milliseconds. @default {the services' default} */
  retryDelaysMs?: readonly number[];
  /** Time between two readings, in milliseconds. @default {1000} */
  pollIntervalMs?: number;
  /**
   * How the bearer tokens of the page's actions are checked, as the services check theirs
   * (`AUTH_JWT_SECRET` or `AUTH_JWKS_URL`). @default {not at all: anyone who reaches the page may act}
   */
  auth?: AuthConfig;
  /**
   * The bearer token of the console's own reads of orders and notifications (`CONSOLE_TOKEN`): an
   * admin's, for services that check tokens. Actions carry the token of whoever asked instead.
   */
  token?: string;
}

/** A running console. */
export interface RunningConsole {
  /** Where to open the page, e.g. `http://127.0.0.1:8000/`. */
  url: string;
  live: Live;
  /** Closes the page's streams, stops reading and closes the broker connection. */
  close(): Promise<void>;
}

/**
 * Starts the console and resolves once it listens.
 * @throws {Deno.errors.AddrInUse} when the port is taken
 */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const { amqpUrls, services, log, port = 8000, hostname = "127.0.0.1" } = options;
  const assets = new Map<string, string>();
  for (const file of ["console.js", "console.css"]) {
    assets.set(file, await Deno.readTextFile(new URL(`./assets/${file}`, import.meta.url)));
  }
  const closing = new AbortController();
  // Listen first, so that a taken port fails before anything else starts. No request is handled
  // before `app` below is set, as nothing is awaited in between.
  const server = Deno.serve(
    { hostname, port, onListen: () => {} },
    (request, info) => app.fetch(request, info),
  );
  const broker = connectBroker(amqpUrls, {
    log,
    connectionName: "console",
    topology: options.retryDelaysMs ? { retryDelaysMs: options.retryDelaysMs } : undefined,
  });
  const tools = connectBrokerTools(amqpUrls.join(","), { connectionName: "console-tools" });
  const live = startLive({
    broker,
    tools,
    managementApi: managementApi(options.managementUrl, { timeoutMs: 2_000 }),
    vhost: vhostOf(amqpUrls[0]),
    services,
    log,
    pollIntervalMs: options.pollIntervalMs,
    token: options.token,
  });
  const app = consoleApp({
    live,
    services,
    log,
    panels: feedPanels(live),
    assets,
    // The name it was told to listen on is one of this machine's.
    allowedHosts: [...options.allowedHosts ?? [], hostname],
    closing: closing.signal,
    auth: options.auth,
  });
  const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `http://${shown}:${server.addr.port}/`;
  log.info("listening", { url });
  return {
    url,
    live,
    async close() {
      closing.abort();
      await server.shutdown();
      await live.stop();
      await tools.close();
      await broker.close();
    },
  };
}
