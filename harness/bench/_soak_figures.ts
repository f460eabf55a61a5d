/**
 * The soak's arithmetic, apart from any stack: its samples, when missed samples end it, the
 * least-squares growth that says whether memory and storage are flat, the figures judged against
 * the soak's targets, the table and the chart.
 * @module
 */
import { type ChartPoint, openChart, renderSvgChart } from "../lib/chart.ts";
import { type ServiceName, SERVICES } from "../lib/service_process.ts";

/** What one service looked like at a sample. */
export interface ServiceSample {
  /** Resident memory now (`VmRSS`), in MB. */
  rssMb: number;
  /** Private resident memory now (`RssAnon`), in MB. */
  privateMb: number;
  /** V8 heap in use (`process_heap_used_bytes`), in MB. */
  heapMb: number;
  /** Its database on disk: the SQLite file and its WAL, or its PostgreSQL tables and indexes. */
  storageMb: number;
  /**
   * The part of `storageMb` that is not the business rows (orders, stock, reservations,
   * notifications, which are kept): the inbox, the idempotency keys and the outbox with their
   * indexes, the free pages and (SQLite) the WAL. Retention and the relay keep it bounded.
   */
  bookkeepingMb: number;
  /** Rows in its inbox. */
  inboxRows: number;
}

/** One window of the soak, sampled at its end. */
export interface SoakSample {
  /** Seconds from the start of the stream to the end of the window. */
  t: number;
  /** Each service sampled; one whose sample failed or timed out this time is missing. */
  services: Partial<Record<ServiceName, ServiceSample>>;
  /** Messages ready or unacked in every consumed queue; undefined when the broker did not say. */
  queueDepth?: number;
  /** Orders placed (answered 202) in the window. */
  orders: number;
  /** POST → notification of the orders placed in the window, in milliseconds. */
  p50Ms?: number;
  p99Ms?: number;
  /** Orders placed in the window with no notification by the end of the next window. */
  late: number;
}

/** One of the soak's targets, judged. */
export interface Verdict {
  target: string;
  /** The worst value measured against it, or undefined when the run was too short to tell. */
  value?: number;
  limit: number;
  met: boolean;
}

/** What a soak comes to. */
export interface SoakFigures {
  /** RSS and heap growth per service, MB per 10 minutes, after the warm-up. */
  rssGrowthMbPer10Min: Partial<Record<ServiceName, number>>;
  heapGrowthMbPer10Min: Partial<Record<ServiceName, number>>;
  /** The largest private memory sampled per service, in MB. */
  peakPrivateMb: Partial<Record<ServiceName, number>>;
  /** Storage growth per service, MB per 10 minutes, once the retention window passed once. */
  storageGrowthMbPer10Min: Partial<Record<ServiceName, number>>;
  /** Storage per service at the first and the last sample after the retention window. */
  storageMbAfterRetention: Partial<Record<ServiceName, { first: number; last: number }>>;
  /** Growth of the bookkeeping part of storage, MB per 10 minutes, after the retention window. */
  bookkeepingGrowthMbPer10Min: Partial<Record<ServiceName, number>>;
  /** What the business rows grew by per order placed after the retention window, in bytes. */
  businessBytesPerOrder: Partial<Record<ServiceName, number>>;
  /** p99 POST → notification of the first and the last window that had orders, in ms. */
  firstP99Ms?: number;
  lastP99Ms?: number;
  /** Samples that each source missed, left out of every figure above. */
  missedSamples: Record<SampleSource, number>;
  verdicts: Verdict[];
}

/** What a sample reads from: each service, and the broker for the queue depths. */
export type SampleSource = ServiceName | "queues";

/** Every {@linkcode SampleSource}, in the table's order. */
export const SAMPLE_SOURCES: readonly SampleSource[] = [...SERVICES, "queues"];

/**
 * Samples of one source that may be missed in a row before the soak gives up: a minute at the
 * default 10 s interval, longer than a busy machine keeps a live service from answering.
 */
export const MISSED_IN_A_ROW_LIMIT = 6;

/** Where {@linkcode tallyMissedSamples} leaves the soak after a round of sampling. */
export interface MissedTally {
  /** Samples missed in a row per source, this round included; 0 once a sample was taken. */
  inARow: Record<SampleSource, number>;
  /** Why the soak cannot go on, when a source missed `limit` samples in a row. */
  giveUp?: string;
}

/**
 * Counts a round of sampling: a missed sample (a slow answer on a busy machine, say) costs that
 * source's values in that row only, but `limit` missed in a row mean a source that stays
 * unreachable, which ends the soak. A service that exited ends it at once, apart from this count.
 * @param inARow samples missed in a row per source before this round, none when absent
 * @param missed why each source that missed this round's sample missed it
 */
export function tallyMissedSamples(
  inARow: Readonly<Partial<Record<SampleSource, number>>>,
  missed: Readonly<Partial<Record<SampleSource, string>>>,
  limit: number = MISSED_IN_A_ROW_LIMIT,
): MissedTally {
  const tally = {} as Record<SampleSource, number>;
  let giveUp: string | undefined;
  for (const source of SAMPLE_SOURCES) {
    const reason = missed[source];
    tally[source] = reason === undefined ? 0 : (inARow[source] ?? 0) + 1;
    if (reason !== undefined && tally[source] >= limit) {
      giveUp ??= `${source} missed ${tally[source]} samples in a row, the last as ${reason}`;
    }
  }
  return giveUp === undefined ? { inARow: tally } : { inARow: tally, giveUp };
}

/** Options for {@linkcode summarizeSoak}. */
export interface SummaryOptions {
  /** The inbox and idempotency-key window of the run, in seconds. */
  retentionSeconds: number;
  /** Samples before this are left out of the growth, in seconds. @default {120} */
  warmUpSeconds?: number;
}

/**
 * The soak's targets: at most 60 MB of private memory per service, and RSS and heap growing at
 * most 2 MB per 10 minutes after the warm-up (flat, within the noise of a sample).
 */
export const PRIVATE_MB_TARGET = 60;
export const GROWTH_MB_PER_10_MIN_TARGET = 2;
/** Flat storage: what bookkeeping may grow by after the retention window, MB per 10 minutes. */
export const FLAT_STORAGE_MB_PER_10_MIN = 1;

/**
 * The least-squares slope of `points`, in value units per second of `t`.
 * @throws {RangeError} with fewer than two distinct times: no line goes through one point
 */
export function slope(points: readonly ChartPoint[]): number {
  const n = points.length;
  const meanT = points.reduce((sum, p) => sum + p.t, 0) / n;
  const meanV = points.reduce((sum, p) => sum + p.value, 0) / n;
  let covariance = 0;
  let variance = 0;
  for (const p of points) {
    covariance += (p.t - meanT) * (p.value - meanV);
    variance += (p.t - meanT) ** 2;
  }
  if (!(variance > 0)) {
    throw new RangeError(`Cannot fit a slope as it needs two distinct times: got ${n} points`);
  }
  return covariance / variance;
}

/** The slope of `points` from `from` seconds on, per 10 minutes; undefined with too few. */
function growthPer10Min(points: ChartPoint[], from: number): number | undefined {
  const after = points.filter((p) => p.t >= from);
  if (new Set(after.map((p) => p.t)).size < 2) return undefined;
  return Math.round(slope(after) * 600 * 100) / 100;
}

/** The series of one field of one service, without the samples it missed. */
export function seriesOf(
  samples: readonly SoakSample[],
  service: ServiceName,
  field: keyof ServiceSample,
): ChartPoint[] {
  return samples.flatMap((s) => {
    const sampled = s.services[service];
    return sampled ? [{ t: s.t, value: sampled[field] }] : [];
  });
}

/**
 * Growth after warm-up, storage after the retention window plus a minute (retention deletes at
 * most a minute late), latency first against last, and the targets judged.
 */
export function summarizeSoak(
  samples: readonly SoakSample[],
  options: SummaryOptions,
): SoakFigures {
  const { retentionSeconds, warmUpSeconds = 120 } = options;
  const settled = retentionSeconds + 60;
  const figures: SoakFigures = {
    rssGrowthMbPer10Min: {},
    heapGrowthMbPer10Min: {},
    peakPrivateMb: {},
    storageGrowthMbPer10Min: {},
    storageMbAfterRetention: {},
    bookkeepingGrowthMbPer10Min: {},
    businessBytesPerOrder: {},
    missedSamples: countMissedSamples(samples),
    verdicts: [],
  };
  const afterRetention = samples.filter((s) => s.t >= settled);
  for (const name of SERVICES) {
    const set = <K extends keyof SoakFigures>(key: K, value: number | undefined) => {
      if (value !== undefined) (figures[key] as Record<string, number>)[name] = value;
    };
    set("rssGrowthMbPer10Min", growthPer10Min(seriesOf(samples, name, "rssMb"), warmUpSeconds));
    set("heapGrowthMbPer10Min", growthPer10Min(seriesOf(samples, name, "heapMb"), warmUpSeconds));
    const privateMb = seriesOf(samples, name, "privateMb");
    if (privateMb.length) set("peakPrivateMb", Math.max(...privateMb.map((p) => p.value)));
    const storage = seriesOf(samples, name, "storageMb").filter((p) => p.t >= settled);
    set("storageGrowthMbPer10Min", growthPer10Min(storage, settled));
    if (storage.length) {
      figures.storageMbAfterRetention[name] = {
        first: storage[0].value,
        last: storage.at(-1)!.value,
      };
    }
    const bookkeeping = seriesOf(afterRetention, name, "bookkeepingMb");
    set("bookkeepingGrowthMbPer10Min", growthPer10Min(bookkeeping, settled));
    set("businessBytesPerOrder", businessBytesPerOrder(afterRetention, name));
  }
  const withLatency = samples.filter((s) => s.p99Ms !== undefined);
  figures.firstP99Ms = withLatency[0]?.p99Ms;
  figures.lastP99Ms = withLatency.at(-1)?.p99Ms;
  figures.verdicts = [
    judge("private memory per service (MB)", figures.peakPrivateMb, PRIVATE_MB_TARGET),
    judge(
      "RSS growth after warm-up (MB per 10 min)",
      figures.rssGrowthMbPer10Min,
      GROWTH_MB_PER_10_MIN_TARGET,
    ),
    judge(
      "heap growth after warm-up (MB per 10 min)",
      figures.heapGrowthMbPer10Min,
      GROWTH_MB_PER_10_MIN_TARGET,
    ),
    judge(
      "bookkeeping storage growth after retention (MB per 10 min)",
      figures.bookkeepingGrowthMbPer10Min,
      FLAT_STORAGE_MB_PER_10_MIN,
    ),
  ];
  return figures;
}

/**
 * Growth of the business rows of `name` from the first to the last of `samples` that has it, per
 * order placed in between.
 */
function businessBytesPerOrder(
  samples: readonly SoakSample[],
  name: ServiceName,
): number | undefined {
  const sampled = samples.filter((s) => s.services[name] !== undefined);
  if (sampled.length < 2) return undefined;
  const first = sampled[0];
  const last = sampled.at(-1)!;
  const orders = samples
    .filter((s) => s.t > first.t && s.t <= last.t)
    .reduce((sum, s) => sum + s.orders, 0);
  if (orders === 0) return undefined;
  const business = (s: SoakSample) => s.services[name]!.storageMb - s.services[name]!.bookkeepingMb;
  return Math.round((business(last) - business(first)) * 1e6 / orders);
}

/** How many of `samples` each source missed. */
function countMissedSamples(samples: readonly SoakSample[]): Record<SampleSource, number> {
  const missed = {} as Record<SampleSource, number>;
  for (const source of SAMPLE_SOURCES) {
    missed[source] = samples.filter((s) =>
      source === "queues" ? s.queueDepth === undefined : s.services[source] === undefined
    ).length;
  }
  return missed;
}

/** The worst of `values` against `limit`; a run too short to measure meets nothing. */
function judge(
  target: string,
  values: Partial<Record<ServiceName, number>>,
  limit: number,
): Verdict {
  const measured = Object.values(values);
  if (measured.length < SERVICES.length) return { target, limit, met: false };
  const value = Math.max(...measured);
  return { target, value, limit, met: value <= limit };
}

const COLUMNS = ["rss", "priv", "heap", "db", "bookkpg", "inbox"] as const;

/** The table's two header lines, a group of columns per service. */
export function formatSoakHeader(): string {
  const group = (name: string) => name.padEnd(COLUMNS.length * 8 - 1);
  const top = `${"".padStart(6)} ${SERVICES.map(group).join(" │ ")} │`;
  const columns = COLUMNS.map((c) => c.padStart(7)).join(" ");
  const bottom = `${"t s".padStart(6)} ${SERVICES.map(() => columns).join(" │ ")} │ ` +
    `${"queued".padStart(6)} ${"orders".padStart(6)} ${"p50 ms".padStart(7)} ` +
    `${"p99 ms".padStart(7)} ${"late".padStart(5)}`;
  return `${top}\n${bottom}`;
}

/** One sample as a line of the table: memory in MB, storage in MB, inbox in rows. */
export function formatSoakRow(sample: SoakSample): string {
  const cell = (value: number | undefined, digits = 1) =>
    (value === undefined ? "-" : value.toFixed(digits)).padStart(7);
  const groups = SERVICES.map((name) => {
    const s = sample.services[name];
    return [
      cell(s?.rssMb),
      cell(s?.privateMb),
      cell(s?.heapMb),
      cell(s?.storageMb),
      cell(s?.bookkeepingMb),
      cell(s?.inboxRows, 0),
    ]
      .join(" ");
  });
  return `${String(sample.t).padStart(6)} ${groups.join(" │ ")} │ ` +
    `${String(sample.queueDepth ?? "-").padStart(6)} ${String(sample.orders).padStart(6)} ` +
    `${cell(sample.p50Ms)} ${cell(sample.p99Ms)} ${String(sample.late).padStart(5)}`;
}

/** The figures and the verdicts, a line each. */
export function formatSoakFigures(figures: SoakFigures): string {
  const per = (values: Partial<Record<ServiceName, number>>, unit: string) =>
    SERVICES.map((name) => `${name} ${values[name] ?? "-"}${unit}`).join(", ");
  const storage = SERVICES.map((name) => {
    const s = figures.storageMbAfterRetention[name];
    return `${name} ${s ? `${s.first} → ${s.last} MB` : "-"}`;
  }).join(", ");
  const lines = [
    `RSS growth after warm-up:     ${per(figures.rssGrowthMbPer10Min, " MB/10 min")}`,
    `heap growth after warm-up:    ${per(figures.heapGrowthMbPer10Min, " MB/10 min")}`,
    `peak private memory:          ${per(figures.peakPrivateMb, " MB")}`,
    `storage after retention:      ${storage}`,
    `storage growth after it:      ${per(figures.storageGrowthMbPer10Min, " MB/10 min")}`,
    `  of it, bookkeeping:         ${per(figures.bookkeepingGrowthMbPer10Min, " MB/10 min")}`,
    `  business rows per order:    ${per(figures.businessBytesPerOrder, " bytes")}`,
    `p99 POST → notification:      first window ${figures.firstP99Ms ?? "-"} ms, last ${
      figures.lastP99Ms ?? "-"
    } ms`,
    `samples missed:               ${
      SAMPLE_SOURCES.map((source) => `${source} ${figures.missedSamples[source]}`).join(", ")
    }`,
    "",
    ...figures.verdicts.map((v) =>
      v.value === undefined
        ? `not judged  ${v.target}: the run was too short (target ≤ ${v.limit})`
        : `${v.met ? "met    " : "NOT MET"}  ${v.target}: ${v.value} (target ≤ ${v.limit})`
    ),
  ];
  return lines.join("\n");
}

/**
 * The series as one SVG: a panel per service for RSS, private memory, heap, storage and inbox
 * rows, then the queue depth and the p99, each panel drawn by {@linkcode renderSvgChart}.
 */
export function renderSoakChart(samples: readonly SoakSample[], title: string): string {
  const width = 360;
  const height = 200;
  const panels: string[][] = [];
  const rows: Array<[keyof ServiceSample, string]> = [
    ["rssMb", "RSS MB"],
    ["privateMb", "private MB"],
    ["heapMb", "V8 heap MB"],
    ["storageMb", "storage MB"],
    ["bookkeepingMb", "bookkeeping storage MB"],
    ["inboxRows", "inbox rows"],
  ];
  const options = { width, height, xLabel: "seconds" };
  for (const [field, label] of rows) {
    panels.push(
      SERVICES.map((name) =>
        renderSvgChart(seriesOf(samples, name, field), { ...options, title: `${name}: ${label}` })
      ),
    );
  }
  panels.push([
    renderSvgChart(
      samples.flatMap((s) => s.queueDepth === undefined ? [] : [{ t: s.t, value: s.queueDepth }]),
      { ...options, title: "messages queued" },
    ),
    renderSvgChart(
      samples.filter((s) => s.p99Ms !== undefined).map((s) => ({ t: s.t, value: s.p99Ms! })),
      { ...options, title: "p99 POST → notification ms" },
    ),
    renderSvgChart(
      samples.map((s, i) => ({ t: s.t, value: s.orders / (s.t - (samples[i - 1]?.t ?? 0)) })),
      {
        ...options,
        title: "orders/s placed",
      },
    ),
  ]);
  const top = 40;
  const total = { width: width * 3, height: top + height * panels.length };
  const parts = openChart({ ...total, title });
  panels.forEach((row, r) =>
    row.forEach((svg, c) =>
      parts.push(`<g transform="translate(${c * width} ${top + r * height})">${svg}</g>`)
    )
  );
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}
