/**
 * `deno task soak`: the three services under a steady open-loop order stream for a long time, on
 * an isolated stack (the bench's), with short retention windows so that retention cycles several
 * times within the run. Every `--interval` seconds it samples each service's RSS, private memory
 * and V8 heap, each database's size on disk, the inbox rows, the queue depths, and the p50/p99 of
 * POST → notification for the orders placed in that window. It prints a row per sample, writes an
 * SVG chart, and ends with the growth of memory and storage and the soak's targets judged. It is
 * not a test: a target not met is printed, not failed. A sample that fails or times out is missed
 * (a line says why, its row shows "-", the figures leave it out) and the soak goes on; it ends only
 * when a service exits or a source misses `MISSED_IN_A_ROW_LIMIT` samples in a row.
 * @module
 */
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { readCommandLine, runToolFromCommandLine, toolOptions } from "../lib/command_line.ts";
// @ts-types="@types/pg"
import pg from "pg";
import {
  type BenchStack,
  type MemoryPeaks,
  retentionEnv,
  type StoreKind,
  withBenchStack,
} from "./_stack.ts";
import { startPostgresServer } from "../lib/postgres_server.ts";
import { notificationSent } from "../lib/effects.ts";
import { privateRssMb, rssMb } from "./_stats.ts";
import { percentiles } from "../lib/percentiles.ts";
import { streamOrders } from "../lib/order_stream.ts";
import { waitFor, within } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { request, REQUEST_TIMEOUT_MS } from "../lib/http_probes.ts";
import { type RunningService, type ServiceName, SERVICES } from "../lib/service_process.ts";
import type { Stack } from "../lib/stack.ts";
import {
  formatSoakFigures,
  formatSoakHeader,
  formatSoakRow,
  renderSoakChart,
  SAMPLE_SOURCES,
  type SampleSource,
  type ServiceSample,
  type SoakFigures,
  type SoakSample,
  summarizeSoak,
  tallyMissedSamples,
} from "./_soak_figures.ts";
import { parseDuration } from "../../shared/config.ts";
import { describeError } from "../../shared/log.ts";
import { QUEUES } from "../../shared/topology.ts";

/** Options for {@linkcode runSoak}. */
export interface SoakOptions {
  /** How long to send orders, in minutes. @default {30} */
  minutes?: number;
  /** Orders per second, open loop. @default {300} */
  rate?: number;
  /** @default {"sqlite"} */
  store?: StoreKind;
  /**
   * On PostgreSQL, run a private server started for the soak, with PostgreSQL's defaults
   * (autovacuum on), instead of the server of `TEST_DATABASE_URL`. @default {false}
   */
  privatePostgres?: boolean;
  /** `INBOX_RETENTION` and `IDEMPOTENCY_KEY_RETENTION` of the services. @default {"5m"} */
  retention?: string;
  /** Seconds between samples. @default {10} */
  intervalSeconds?: number;
  /** Where to write the SVG chart. @default {soak-<time>.svg in the temp directory} */
  chart?: string;
  /** Receives the table's lines as they come. @default {no output} */
  log?: (line: string) => void;
}

/** A soak's settings, samples and figures. */
export interface SoakReport {
  settings: Required<Omit<SoakOptions, "log">>;
  samples: SoakSample[];
  figures: SoakFigures;
  /** Peak RSS (`VmHWM`) and private memory (sampled every 100 ms) per service over the run. */
  peaks: MemoryPeaks;
  /** The PostgreSQL server's version and autovacuum setting, on PostgreSQL. */
  postgres?: PostgresSettings;
  /** Orders answered 202, and those that got no 202 in the stream's deadline. */
  placed: number;
  failed: number;
}

/**
 * Runs the soak and summarises it.
 * @throws {RangeError} before anything runs when an option is out of range
 */
export async function runSoak(options: SoakOptions = {}): Promise<SoakReport> {
  const {
    minutes = 30,
    rate = 300,
    store = "sqlite",
    privatePostgres = false,
    retention = "5m",
    intervalSeconds = 10,
    chart = join(Deno.env.get("TMPDIR") ?? "/tmp", `soak-${Date.now()}.svg`),
    log = () => {},
  } = options;
  for (const [name, value] of Object.entries({ minutes, rate, intervalSeconds })) {
    if (!(value > 0)) {
      throw new RangeError(
        `Cannot run the soak as ${name} must be a positive number: current value is ${value}`,
      );
    }
  }
  const retentionMs = parseDuration(retention);
  if (!retentionMs) {
    throw new RangeError(
      `Cannot run the soak as retention must be a duration such as 5m: current value is "${retention}"`,
    );
  }
  const settings = { minutes, rate, store, privatePostgres, retention, intervalSeconds, chart };
  const peaks: MemoryPeaks = { rssMb: {}, privateMb: {} };
  const server = store === "postgres" && privatePostgres ? await startPostgresServer() : undefined;
  try {
    const config = {
      store,
      instances: 1,
      databaseServer: server?.url,
      env: retentionEnv(retention),
    };
    return await withBenchStack(
      config,
      { services: [...SERVICES], memory: peaks },
      (bench) => soakStack(bench, { ...settings, retentionMs, peaks, log }),
    );
  } finally {
    await server?.stop();
  }
}

/** The soak proper, on a stack that runs. */
async function soakStack(
  bench: BenchStack,
  options: Required<Omit<SoakOptions, "log">> & {
    retentionMs: number;
    peaks: MemoryPeaks;
    log: (line: string) => void;
  },
): Promise<SoakReport> {
  const { retentionMs, peaks, log, ...settings } = options;
  const { minutes, rate, store, retention, intervalSeconds, chart } = settings;
  const { stack } = bench;
  let postgres: PostgresSettings | undefined;
  if (bench.databaseUrl) {
    postgres = await readPostgresSettings(bench.databaseUrl);
    log(`PostgreSQL ${postgres.version}, autovacuum ${postgres.autovacuum}`);
    if (postgres.autovacuum !== "on") {
      log(
        "This server runs without autovacuum: deleted rows are never reclaimed, so its storage " +
          "cannot level off. --private-postgres soaks on a server of its own with it on.",
      );
    }
  }
  const meter = openStorageMeter(stack, bench.databaseUrl);
  const exits = watchExits(stack);
  // Ends the order stream early when the soak cannot go on.
  const stopStream = new AbortController();
  try {
    const intervalMs = intervalSeconds * 1000;
    const sentAt = new Map<string, number>();
    const notifiedAt = new Map<string, number>();
    const ordersIn: number[] = [];
    let placed = 0;
    let failed = 0;
    const began = Date.now();
    const windowOf = (ms: number) => Math.floor((ms - began) / intervalMs);
    const streaming = streamOrders(
      stack,
      { seconds: minutes * 60, rate, label: "soak", signal: stopStream.signal },
      (result) => {
        if (!result.orderId) return void failed++;
        placed++;
        sentAt.set(result.orderId, result.sentAtMs);
        const w = windowOf(result.sentAtMs);
        ordersIn[w] = (ordersIn[w] ?? 0) + 1;
      },
    );
    const samples: SoakSample[] = [];
    let missedInARow: Partial<Record<SampleSource, number>> = {};
    log(formatSoakHeader());
    const windows = Math.ceil((minutes * 60) / intervalSeconds);
    for (let k = 1; k <= windows + 1; k++) {
      // A sampling interval, not a wait for a condition.
      const due = began + k * intervalMs;
      if (k <= windows) await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
      else await streaming;
      collectNotifications(stack, notifiedAt);
      if (k <= windows) {
        const t = k * intervalSeconds;
        const { sample, missed } = await sampleStack(stack, meter);
        samples.push({ ...sample, t, late: 0, orders: 0 });
        throwIfExited(stack, exits);
        const tally = tallyMissedSamples(missedInARow, missed);
        missedInARow = tally.inARow;
        for (const source of SAMPLE_SOURCES) {
          const reason = missed[source];
          if (reason === undefined) continue;
          log(
            `t ${t} s: missed the sample of ${source} (${
              tally.inARow[source]
            } in a row): ${reason}`,
          );
        }
        if (tally.giveUp) throw new Error(tally.giveUp);
      }
      // Window k - 1 had a whole interval for its notifications; the last one gets a deadline.
      if (k === windows + 1) {
        await waitFor("the last window's notifications", () => {
          collectNotifications(stack, notifiedAt);
          return [...sentAt.keys()].every((id) => notifiedAt.has(id));
        }, { timeoutMs: 30_000, intervalMs: 200 }).catch(() => {});
      }
      const finished = samples[k - 2];
      if (!finished) continue;
      Object.assign(finished, windowLatency(k - 2, { sentAt, notifiedAt, windowOf }));
      finished.orders = ordersIn[k - 2] ?? 0;
      log(formatSoakRow(finished));
    }
    const figures = summarizeSoak(samples, { retentionSeconds: retentionMs / 1000 });
    const title =
      `deno task soak: ${minutes} min at ${rate} orders/s on ${store}, retention ${retention}`;
    await Deno.writeTextFile(chart, renderSoakChart(samples, title));
    return { settings, samples, figures, peaks, postgres, placed, failed };
  } finally {
    stopStream.abort();
    await meter.close();
  }
}

/**
 * How long one source's sample may take before it is missed, in milliseconds: longer than each
 * request's and query's own deadline, whose error says better what was late.
 */
const SAMPLE_TIMEOUT_MS = REQUEST_TIMEOUT_MS + 5_000;

/** The exit code of every service of `stack` that exited, filled in as they exit. */
function watchExits(stack: Stack): Partial<Record<ServiceName, number>> {
  const exits: Partial<Record<ServiceName, number>> = {};
  for (const name of SERVICES) stack.services[name]?.exited.then((code) => exits[name] = code);
  return exits;
}

/**
 * Ends the soak when a service exited: its missed samples would say a busy machine, not a dead
 * service.
 * @throws {Error} naming the service, its exit code and the end of its stderr
 */
function throwIfExited(stack: Stack, exits: Partial<Record<ServiceName, number>>): void {
  for (const name of SERVICES) {
    const code = exits[name];
    if (code === undefined) continue;
    const stderr = stack.services[name]?.stderr.join("\n").slice(-2000) ?? "";
    throw new Error(`${name} exited with code ${code}${stderr ? `: ${stderr}` : ""}`);
  }
}

/** What a PostgreSQL soak depends on: with autovacuum off, no storage levels off. */
export interface PostgresSettings {
  version: string;
  autovacuum: string;
}

async function readPostgresSettings(url: string): Promise<PostgresSettings> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      "SELECT current_setting('server_version') AS version, current_setting('autovacuum') AS autovacuum",
    );
    return rows[0];
  } finally {
    await client.end();
  }
}

/** Moves the notifications logged so far into `notifiedAt` and forgets every line read. */
function collectNotifications(stack: Stack, notifiedAt: Map<string, number>): void {
  for (const line of stack.services.notification?.logs ?? []) {
    const notified = notificationSent(line);
    if (notified) notifiedAt.set(notified.orderId, notified.atMs);
  }
  // The harness keeps no line it has read: over half an hour they would be its own leak.
  for (const service of Object.values(stack.services)) service.logs.length = 0;
}

/** p50/p99 POST → notification of the orders placed in window `w`, forgotten afterwards. */
function windowLatency(
  w: number,
  state: {
    sentAt: Map<string, number>;
    notifiedAt: Map<string, number>;
    windowOf: (ms: number) => number;
  },
): Pick<SoakSample, "p50Ms" | "p99Ms" | "late"> {
  const { sentAt, notifiedAt, windowOf } = state;
  const latencies: number[] = [];
  let late = 0;
  for (const [id, sent] of sentAt) {
    if (windowOf(sent) > w) continue;
    const notified = notifiedAt.get(id);
    if (notified === undefined) late++;
    else latencies.push(notified - sent);
    sentAt.delete(id);
    notifiedAt.delete(id);
  }
  if (latencies.length === 0) return { late };
  const { p50, p99 } = percentiles(latencies);
  return { p50Ms: p50, p99Ms: p99, late };
}

/** Reads each service's database size, its bookkeeping part and inbox rows, on either store. */
interface StorageMeter {
  read(
    name: ServiceName,
  ): Promise<Pick<ServiceSample, "storageMb" | "bookkeepingMb" | "inboxRows">>;
  close(): Promise<void>;
}

/**
 * The tables of what the services record and keep: orders, stock, reservations, notifications.
 * Everything else on disk is bookkeeping (inbox, idempotency keys, outbox, free pages, WAL).
 */
const BUSINESS_TABLES = ["orders", "stock", "reservations", "notifications"];

function openStorageMeter(stack: Stack, databaseUrl?: string): StorageMeter {
  const mb = (bytes: number) => round(bytes / 1e6, 2);
  if (databaseUrl) {
    const client = sampleClient(databaseUrl);
    return {
      async read(name) {
        const schema = `${name}_service`;
        const size = await client.query(
          `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes,
                  coalesce(sum(pg_total_relation_size(c.oid))
                    FILTER (WHERE c.relname = ANY($2)), 0) AS business
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1 AND c.relkind = 'r'`,
          [schema, BUSINESS_TABLES],
        );
        const rows = await client.query(`SELECT count(*) AS n FROM ${schema}.inbox`);
        const { bytes, business } = size.rows[0];
        return {
          storageMb: mb(Number(bytes)),
          bookkeepingMb: mb(Number(bytes) - Number(business)),
          inboxRows: Number(rows.rows[0].n),
        };
      },
      close: () => client.close(),
    };
  }
  return {
    async read(name) {
      const file = join(stack.dataDir, `${name}.db`);
      let bytes = 0;
      for (const path of [file, `${file}-wal`]) {
        bytes += await Deno.stat(path).then((s) => s.size, () => 0);
      }
      // A reader of its own: WAL lets it read beside the service's writer. dbstat reads only the
      // b-trees it is asked for, so a sample costs the business tables, not the whole file.
      const db = new DatabaseSync(file, { readOnly: true });
      try {
        const count = (sql: string, ...params: string[]) =>
          Number(Object.values(db.prepare(sql).get(...params) ?? {})[0] ?? 0);
        const trees = db.prepare(
          `SELECT name FROM sqlite_schema
            WHERE tbl_name IN (${BUSINESS_TABLES.map(() => "?").join(", ")})
              AND type IN ('table', 'index')`,
        ).all(...BUSINESS_TABLES) as Array<{ name: string }>;
        let business = 0;
        for (const { name: tree } of trees) {
          business += count(
            "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ? AND aggregate = TRUE",
            tree,
          );
        }
        return {
          storageMb: mb(bytes),
          bookkeepingMb: mb(bytes - business),
          inboxRows: count("SELECT count(*) FROM inbox"),
        };
      } finally {
        db.close();
      }
    },
    close: () => Promise.resolve(),
  };
}

/**
 * The PostgreSQL connection of the samples, which connects again at the next query after any
 * failure: a query that timed out or a connection that was reset costs a sample, not the soak.
 */
function sampleClient(url: string): {
  query(sql: string, values?: unknown[]): Promise<pg.QueryResult>;
  close(): Promise<void>;
} {
  let current: Promise<pg.Client> | undefined;
  async function connect(): Promise<pg.Client> {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: REQUEST_TIMEOUT_MS,
      query_timeout: REQUEST_TIMEOUT_MS,
    });
    // A connection lost between samples fails the next query, which connects again; unhandled,
    // the client's error event would end the process.
    client.on("error", () => {});
    await client.connect();
    return client;
  }
  function end(client: Promise<pg.Client> | undefined): Promise<void> {
    return client?.then((c) => c.end()).catch(() => {}) ?? Promise.resolve();
  }
  return {
    async query(sql, values) {
      const client = current ??= connect();
      try {
        return await (await client).query(sql, values);
      } catch (error) {
        if (current === client) current = undefined;
        void end(client);
        throw error;
      }
    },
    close() {
      const client = current;
      current = undefined;
      return end(client);
    },
  };
}

/** A sample of the stack, and why each source it misses could not be read. */
interface StackSample {
  sample: Pick<SoakSample, "services" | "queueDepth">;
  missed: Partial<Record<SampleSource, string>>;
}

/**
 * Memory, storage and inbox of every service, and the depth of every consumed queue, each source
 * read at once with a deadline of its own: one that fails or is late is missed, not waited for.
 */
async function sampleStack(stack: Stack, meter: StorageMeter): Promise<StackSample> {
  const missed: StackSample["missed"] = {};
  async function readOrMiss<T>(
    source: SampleSource,
    read: () => Promise<T>,
  ): Promise<T | undefined> {
    try {
      return await within(read(), SAMPLE_TIMEOUT_MS, `the sample of ${source}`);
    } catch (error) {
      missed[source] = describeError(error);
      return undefined;
    }
  }
  const services: SoakSample["services"] = {};
  const [queueDepth] = await Promise.all([
    readOrMiss("queues", async () => {
      const depths = await Promise.all(QUEUES.map((queue) => stack.tools.queueDepth(queue)));
      return depths.reduce((a, b) => a + b, 0);
    }),
    ...SERVICES.map(async (name) => {
      const sampled = await readOrMiss(name, () => sampleService(stack.services[name]!, meter));
      if (sampled) services[name] = sampled;
    }),
  ]);
  return { sample: { services, queueDepth }, missed };
}

/**
 * Memory, storage and inbox of one service.
 * @throws {Error} saying what could not be read
 */
async function sampleService(service: RunningService, meter: StorageMeter): Promise<ServiceSample> {
  const response = await request(`${service.url}/metrics`);
  const metrics = await response.text();
  if (!response.ok) throw new Error(`its /metrics answered ${response.status}`);
  const heap = /^process_heap_used_bytes (\d+)/m.exec(metrics)?.[1];
  if (heap === undefined) throw new Error("its /metrics has no process_heap_used_bytes");
  const rss = await rssMb(service.pid);
  const privateMb = await privateRssMb(service.pid);
  if (rss === undefined || privateMb === undefined) {
    throw new Error(`cannot read the memory of process ${service.pid} in /proc`);
  }
  return {
    rssMb: rss,
    privateMb,
    heapMb: round(Number(heap) / 1e6, 1),
    ...await meter.read(service.name),
  };
}

const USAGE = `Usage: deno task soak [options]

  --minutes M      how long to send orders (default 30)
  --rate R         orders per second, open loop (default 300)
  --store S        sqlite or postgres (default sqlite)
  --private-postgres
                   with --store postgres, a private server started for the soak with
                   PostgreSQL's defaults (autovacuum on), not the one of TEST_DATABASE_URL
  --retention D    INBOX_RETENTION and IDEMPOTENCY_KEY_RETENTION of the services
                   (default 5m, so that retention cycles several times in a run)
  --interval S     seconds between samples (default 10)
  --chart FILE     where to write the SVG chart (default soak-<time>.svg in the temp dir)
  --json           print one JSON object at the end (the table goes to stderr)`;

/**
 * Parses the command line into {@linkcode SoakOptions}.
 * @throws {RangeError} naming the option and what it must be
 */
export function parseSoakArgs(args: string[]): SoakOptions & { json: boolean; help: boolean } {
  const { values, positive, oneOf } = readCommandLine(args, {
    tool: "the soak",
    options: toolOptions(
      ["minutes", "rate", "store", "retention", "interval", "chart"],
      ["private-postgres"],
    ),
  });
  const store = oneOf("store", ["sqlite", "postgres"] as const);
  return {
    minutes: positive("minutes"),
    rate: positive("rate"),
    store,
    privatePostgres: values["private-postgres"] === true,
    retention: typeof values.retention === "string" ? values.retention : undefined,
    intervalSeconds: positive("interval"),
    chart: typeof values.chart === "string" ? values.chart : undefined,
    json: values.json === true,
    help: values.help === true,
  };
}

if (import.meta.main) {
  await runToolFromCommandLine("the soak", {
    usage: USAGE,
    parse: parseSoakArgs,
    run: ({ json: _json, help: _help, ...soak }, log) => runSoak({ ...soak, log }),
    format: ({ figures, postgres, placed, failed, settings }) =>
      `${formatSoakFigures(figures)}\n\n${placed} orders placed, ${failed} without a 202; ` +
      (postgres ? `PostgreSQL ${postgres.version}, autovacuum ${postgres.autovacuum}; ` : "") +
      `chart: ${settings.chart}`,
  });
}
