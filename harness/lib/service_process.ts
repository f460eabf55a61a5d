/**
 * The three services as child processes: how each is run (the flags of its task in deno.json),
 * its JSON log lines kept for assertions, and its port learnt from its "listening" line.
 * @module
 */
import { join } from "node:path";

/**
 * How a service is run: the same flags as its task in deno.json. V8's young generation is kept to
 * 2 MB semi-spaces and its old generation capped at 128 MB, well above a service's live heap: a busy
 * service peaks lower than with V8's defaults, and a leak ends in a crash and a restart rather than
 * in swap. docs/performance.md has the figures.
 */
export const SERVICE_RUN_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--v8-flags=--max-semi-space-size=2,--max-old-space-size=128",
];

/**
 * The file, relative to the repository, that names `program` in its OpenTelemetry data by default:
 * its task passes it with `--env-file` after the flags above, and so does {@linkcode serviceArgs}.
 */
export function serviceEnvFile(program: string): string {
  return `observability/env/${program}.env`;
}

import { type ServiceName, SERVICES } from "../../shared/topology.ts";

/** The three services. */
export { type ServiceName, SERVICES };

const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * The arguments of `deno` that run service `name`, with `flags` before its main module; from the
 * tree at `root` if given (another checkout, such as an earlier version's), with that tree's own
 * configuration and lock file, and its dependencies from Deno's cache as this tree's come.
 */
export function serviceArgs(
  name: ServiceName,
  flags: readonly string[] = [],
  root: string = ROOT,
): string[] {
  return [
    "run",
    ...SERVICE_RUN_FLAGS,
    ...root === ROOT ? [] : ["--cached-only", `--config=${join(root, "deno.json")}`],
    `--env-file=${join(root, serviceEnvFile(name))}`,
    ...flags,
    join(root, name, "main.ts"),
  ];
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
  /** Every line it wrote to stderr so far. */
  stderr: string[];
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
  /** The tree to run it from: see {@linkcode serviceArgs}. @default {this one} */
  root?: string;
}

/** How long a service may take to start listening, in milliseconds. */
const START_TIMEOUT_MS = 30_000;

/** Starts `name/main.ts` with `options.env` and resolves once it logged the port it listens on. */
export async function startService(
  name: ServiceName,
  options: ServiceOptions,
): Promise<RunningService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: serviceArgs(name, [], options.root),
    cwd: options.root,
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
    stderr,
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

/** Calls `onLine` with each line of `stream`, as it comes; resolves when the stream ends. */
export async function readLines(
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
