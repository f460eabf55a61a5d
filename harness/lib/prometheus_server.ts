/**
 * A private Prometheus on loopback for the tests: the installed server (Debian's `prometheus`) run
 * with a configuration of the test's own in a temporary folder, on a free port, and removed when
 * stopped; with the parts of its HTTP API the tests read (queries, targets, rules, alerts).
 * @module
 */
import { join } from "node:path";
import { freePorts } from "./free_ports.ts";
import { cleanUpOnInterrupt } from "./interrupt.ts";
import { waitFor } from "./async.ts";

/** How to install Prometheus and `promtool` where they are missing. */
export const PROMETHEUS_HINT = "apt-get install prometheus";

/** The path of `program` on `PATH`, or undefined where it is not installed. */
export function findProgram(program: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    try {
      if (Deno.statSync(join(dir, program)).isFile) return join(dir, program);
    } catch {
      // Not in this folder.
    }
  }
  return undefined;
}

/** One series of an instant query's answer. */
export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A scrape target as `/api/v1/targets` shows it. */
export interface Target {
  labels: Record<string, string>;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
}

/** A rule as `/api/v1/rules` shows it, with its health at the last evaluation. */
export interface Rule {
  name: string;
  query: string;
  type: "alerting" | "recording";
  health: "ok" | "err" | "unknown";
  lastError?: string;
  /** When it was last evaluated, an ISO 8601 time. */
  lastEvaluation: string;
  state?: "inactive" | "pending" | "firing";
}

/** An alert that is pending or firing, as `/api/v1/alerts` shows it. */
export interface Alert {
  labels: Record<string, string>;
  state: "pending" | "firing";
}

/** A running private Prometheus. */
export interface PrometheusServer {
  /** Its HTTP API's base URL. */
  url: string;
  /** Its folder: configuration, rule files, storage and log. */
  dir: string;
  /** The series an instant query returns now; throws with Prometheus's error for a bad query. */
  query(expr: string): Promise<Sample[]>;
  targets(): Promise<Target[]>;
  rules(): Promise<Rule[]>;
  alerts(): Promise<Alert[]>;
  /** Stops the server and removes its folder; safe to call twice. */
  stop(): Promise<void>;
}

/** Options for {@linkcode startPrometheus}. */
export interface PrometheusOptions {
  /** The configuration file's text (`prometheus.yml`). */
  config: string;
  /** Other files beside it, by name: the rule files the configuration names. @default {none} */
  files?: Record<string, string>;
  /** How long to wait for it to be ready, in milliseconds. @default {20000} */
  readyTimeoutMs?: number;
}

/**
 * Starts the installed `prometheus` with `options.config` on a free port of 127.0.0.1 and waits
 * until it is ready. Ctrl-C stops it too.
 * @throws {Error} where it is not installed, or when it exits or is not ready in time (with its log)
 */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const { config, files = {}, readyTimeoutMs = 20_000 } = options;
  const program = findProgram("prometheus");
  if (!program) {
    throw new Error(`Cannot start Prometheus as it is not installed (${PROMETHEUS_HINT})`);
  }
  const dir = await Deno.makeTempDir({ prefix: "campus-food-prometheus-" });
  await Deno.writeTextFile(join(dir, "prometheus.yml"), config);
  for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(dir, name), text);
  const [port] = freePorts(1);
  const url = `http://127.0.0.1:${port}`;
  const log = await Deno.open(join(dir, "prometheus.log"), { write: true, create: true });
  const child = new Deno.Command(program, {
    args: [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logged = child.stderr.pipeTo(log.writable).catch(() => {});
  let exited = false;
  const status = child.status.finally(() => exited = true);
  let stopped = false;
  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    forget();
    if (!exited) child.kill("SIGTERM");
    await status;
    await logged;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const forget = cleanUpOnInterrupt(stop);
  try {
    await waitFor("Prometheus to be ready", async () => {
      if (exited) throw new Error(`it exited: ${await readLog(dir)}`);
      const response = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) });
      await response.body?.cancel();
      return response.ok;
    }, { timeoutMs: readyTimeoutMs, intervalMs: 100 });
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    await stop();
    throw new Error(`Cannot start Prometheus: ${why}`, { cause: error });
  }
  const api = apiClient(url);
  return {
    url,
    dir,
    query: (expr) =>
      api<{ result: Sample[] }>("query", { query: expr }).then((data) => data.result),
    targets: () =>
      api<{ activeTargets: Target[] }>("targets", { state: "active" }).then((data) =>
        data.activeTargets
      ),
    rules: () =>
      api<{ groups: Array<{ rules: Rule[] }> }>("rules", {}).then((data) =>
        data.groups.flatMap((group) => group.rules)
      ),
    alerts: () => api<{ alerts: Alert[] }>("alerts", {}).then((data) => data.alerts),
    stop,
  };
}

/** A reader of the API under `url`: each call's `data`, or its error as Prometheus words it. */
function apiClient(url: string) {
  return async function api<T>(path: string, params: Record<string, string>): Promise<T> {
    const response = await fetch(`${url}/api/v1/${path}?${new URLSearchParams(params)}`, {
      signal: AbortSignal.timeout(10_000),
    });
    const body = await response.json() as { status: string; data: T; error?: string };
    if (body.status !== "success") {
      throw new Error(`Prometheus refused ${path} ${JSON.stringify(params)}: ${body.error}`);
    }
    return body.data;
  };
}

/** The end of the server's log, for an error message. */
async function readLog(dir: string): Promise<string> {
  const text = await Deno.readTextFile(join(dir, "prometheus.log")).catch(() => "");
  return text.trim().split("\n").slice(-5).join("\n") || "(nothing logged)";
}
