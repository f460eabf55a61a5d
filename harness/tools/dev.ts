/**
 * `deno task dev`: makes sure a broker answers at `AMQP_URL` (starting one if it can), then runs the
 * three services with one readable, prefixed log, and the console (the live page, at
 * `CONSOLE_PORT`, 8000 by default) beside them, which may stop and start them. A service that
 * dies on its own stops the others; Ctrl-C stops everything cleanly.
 * @module
 */
import { join } from "node:path";
import { parseEnv } from "node:util";
import { type Config, loadConfig } from "../../shared/config.ts";
import {
  describeError,
  type Logger,
  type LogLevel,
  printable,
  renderPretty,
} from "../../shared/log.ts";
import { redact } from "../../shared/redact.ts";
import { ensureBroker } from "../lib/broker_check.ts";
import { brokerAddress } from "../lib/broker_address.ts";
import { readLines, serviceArgs, type ServiceName, SERVICES } from "../lib/service_process.ts";
import { consoleAddress, type RunningConsole, startConsole } from "../ops/console/console.ts";
import type { Services } from "../ops/console/services.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const COLOURS = {
  order: "\x1b[36m",
  inventory: "\x1b[35m",
  notification: "\x1b[34m",
  console: "\x1b[33m",
};

function prefix(name: keyof typeof COLOURS): string {
  return `${COLOURS[name]}${name.padEnd(12)}\x1b[0m│ `;
}

/** Prints each line of `stream` behind the service's name, and hands each log record to `onRecord`. */
function pipeLog(
  name: ServiceName,
  stream: ReadableStream<Uint8Array>,
  onRecord: (record: Record<string, unknown>) => void,
): Promise<void> {
  return readLines(stream, (line) => {
    // Not a log record (a crash trace, say): shown as it is, but for passwords and control characters.
    let text = printable(redact(line));
    try {
      const { service: _, ...record } = JSON.parse(line);
      onRecord(record);
      text = renderPretty(record);
    } catch {
      // Not a log record: `text` stays the line.
    }
    console.log(prefix(name) + text);
  });
}

/** The console's log, in the same readable lines as the services', passwords hidden as theirs are. */
function consoleLogger(): Logger {
  const line = (level: LogLevel) => (msg: string, fields = {}) =>
    console.log(
      prefix("console") + renderPretty({ time: new Date().toISOString(), level, msg, ...fields }),
    );
  return { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error") };
}

/**
 * Sets the variables of `path`, if it exists, that the environment does not set: as `--env-file`
 * does for the services, which inherit them, and for the console, which runs in this process.
 */
async function loadEnvFile(path: string): Promise<void> {
  const text = await Deno.readTextFile(path).catch(() => undefined);
  for (const [name, value] of Object.entries(text ? parseEnv(text) : {})) {
    if (value !== undefined && Deno.env.get(name) === undefined) Deno.env.set(name, value);
  }
}

/** The console over the services dev runs, or undefined (and a line saying why) if it cannot start. */
async function startDevConsole(
  services: Services,
  config: Config,
): Promise<RunningConsole | undefined> {
  try {
    return await startConsole({
      ...consoleAddress(Deno.env.toObject()),
      amqpUrls: config.amqpUrls,
      managementUrl: config.managementUrl,
      retryDelaysMs: config.retryDelaysMs,
      services,
      auth: config.auth,
      token: Deno.env.get("CONSOLE_TOKEN") || undefined,
      log: consoleLogger(),
    });
  } catch (error) {
    console.error(
      `dev: the console did not start (CONSOLE_PORT moves it): ${describeError(error)}`,
    );
    return undefined;
  }
}

interface Child {
  process: Deno.ChildProcess;
  /** Set once the service logged the port it listens on. */
  url?: string;
  listening: Promise<void>;
  /** Set when the console asked it to stop, so that its exit stops nothing else. */
  stopping: boolean;
}

async function main(): Promise<number> {
  await loadEnvFile(join(ROOT, ".env"));
  if (!(await ensureBroker(brokerAddress().amqpUrl, "dev"))) return 1;
  const children = new Map<ServiceName, Child>();
  const finished = Promise.withResolvers<number>();

  function spawn(name: ServiceName): Child {
    const running = new Deno.Command(Deno.execPath(), {
      args: serviceArgs(name),
      env: { LOG_FORMAT: "json" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const listened = Promise.withResolvers<void>();
    const child: Child = { process: running, listening: listened.promise, stopping: false };
    function onRecord(record: Record<string, unknown>): void {
      if (record.msg !== "listening") return;
      child.url = `http://127.0.0.1:${record.port}`;
      listened.resolve();
    }
    pipeLog(name, running.stdout, onRecord);
    pipeLog(name, running.stderr, onRecord);
    running.status.then(({ code }) => {
      listened.reject(new Error(`${name} exited with code ${code} before listening`));
      if (child.stopping) return;
      // One service dying takes the others down: a half-running system would only confuse.
      if (code !== 0) console.error(`dev: ${name} exited with code ${code}; stopping the others`);
      finished.resolve(code === 0 ? 0 : 1);
    });
    child.listening.catch(() => {});
    children.set(name, child);
    return child;
  }

  async function stop(name: ServiceName): Promise<number> {
    const child = children.get(name);
    if (!child) return 0;
    children.delete(name);
    child.stopping = true;
    try {
      child.process.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    return (await child.process.status).code;
  }

  const services: Services = {
    url: (name) => children.get(name)?.url,
    control: {
      running: (name) => children.has(name),
      stop: async (name) => void await stop(name),
      start: async (name) => void await (children.get(name) ?? spawn(name)).listening,
    },
  };
  const config = loadConfig("console");
  for (const name of SERVICES) spawn(name);
  const console_ = await startDevConsole(services, config);
  if (console_) console.log(`${prefix("console")}open ${console_.url}`);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => finished.resolve(0));
  }
  const code = await finished.promise;
  await console_?.close();
  const codes = await Promise.all([...children.keys()].map(stop));
  return code === 0 && codes.every((exit) => exit === 0) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
