/**
 * The registry of a service's metrics and their rendering in the Prometheus text format (0.0.4).
 * Each module declares what it counts ({@linkcode counter}, {@linkcode histogram},
 * {@linkcode gauges}); this one knows only the process's memory. One registry per process, as a
 * process is one service. Counters, histograms and gauges are all the services need, so they are
 * written here rather than taken from `prom-client` (see docs/choices.md).
 * @module
 */
import { describeError } from "./log.ts";

/** Label values by label name. */
export type Labels<L extends string> = Readonly<Record<L, string>>;

/** A counter: a total that only goes up. */
export interface Counter<L extends string> {
  inc(labels: Labels<L>, by?: number): void;
}

/** A histogram of durations in seconds. */
export interface Histogram<L extends string> {
  observe(labels: Labels<L>, seconds: number): void;
  /** Starts timing; the returned function observes the seconds elapsed since. */
  startTimer(labels: Labels<L>): () => void;
}

/** The Prometheus text format's content type. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const PREFIX = "campus_food_";
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Each metric renders its own lines, read at each scrape. */
const families: Array<() => Promise<string> | string> = [];

/**
 * A series per combination of label values, kept in the order they first appeared. They are found
 * through a map per label, nested, so that counting a known series allocates nothing: it happens
 * several times per message.
 */
function seriesOf<L extends string, S>(labelNames: readonly L[], create: () => S) {
  const series: Array<{ labels: string; value: S }> = [];
  const found = new Map<string, unknown>();
  return {
    series,
    get(labels: Labels<L>): S {
      let level = found;
      const last = labelNames.length - 1;
      for (let i = 0; i < last; i++) {
        let next = level.get(labels[labelNames[i]]) as Map<string, unknown> | undefined;
        if (!next) level.set(labels[labelNames[i]], next = new Map());
        level = next;
      }
      let value = level.get(labels[labelNames[last]]) as S | undefined;
      if (value === undefined) {
        value = create();
        level.set(labels[labelNames[last]], value);
        series.push({ labels: renderLabels(labelNames, labels), value });
      }
      return value;
    },
  };
}

function renderLabels(names: readonly string[], labels: Record<string, string>): string {
  // The format escapes backslash, double quote and newline in label values.
  return names.map((name) => `${name}="${labels[name].replace(/[\\"\n]/g, escapeCharacter)}"`)
    .join(",");
}

function escapeCharacter(character: string): string {
  return character === "\n" ? "\\n" : `\\${character}`;
}

function header(name: string, help: string, type: string): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`;
}

/** Declares a counter `campus_food_<name>` with one series per combination of `labelNames`. */
export function counter<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  const metric = PREFIX + name;
  const { series, get } = seriesOf(labelNames, () => ({ total: 0 }));
  families.push(() =>
    header(metric, help, "counter") +
    series.map(({ labels, value }) => `${metric}{${labels}} ${value.total}\n`).join("")
  );
  return { inc: (labels, by = 1) => void (get(labels).total += by) };
}

/** Declares a histogram of durations in seconds, `campus_food_<name>`, per `labelNames`. */
export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
): Histogram<L> {
  const metric = PREFIX + name;
  const { series, get } = seriesOf(labelNames, () => ({
    counts: DURATION_BUCKETS.map(() => 0),
    sum: 0,
    count: 0,
  }));
  families.push(() => {
    let text = header(metric, help, "histogram");
    for (const { labels, value } of series) {
      // Buckets are cumulative: each counts every observation up to its bound.
      DURATION_BUCKETS.forEach((bound, i) => {
        text += `${metric}_bucket{${labels},le="${bound}"} ${value.counts[i]}\n`;
      });
      text += `${metric}_bucket{${labels},le="+Inf"} ${value.count}\n`;
      text += `${metric}_sum{${labels}} ${value.sum}\n`;
      text += `${metric}_count{${labels}} ${value.count}\n`;
    }
    return text;
  });
  function observe(labels: Labels<L>, seconds: number): void {
    const value = get(labels);
    DURATION_BUCKETS.forEach((bound, i) => {
      if (seconds <= bound) value.counts[i]++;
    });
    value.sum += seconds;
    value.count++;
  }
  return {
    observe,
    startTimer(labels) {
      const started = performance.now();
      return () => observe(labels, (performance.now() - started) / 1000);
    },
  };
}

/** The methods of HTTP (RFC 9110) and PATCH (RFC 5789); methods are case-sensitive. */
export const STANDARD_METHODS: ReadonlySet<string> = new Set([
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
]);

/**
 * `method` as a label, span name or log field: a standard method as it is, any other `other`. A
 * client picks the method, and each distinct label value is a series kept for the life of the
 * process, so a client sending made-up methods would otherwise grow `/metrics` without bound.
 */
export function httpMethodLabel(method: string): string {
  return STANDARD_METHODS.has(method) ? method : "other";
}

/** One gauge's value at a scrape, as {@linkcode gauges} reads it. */
export interface GaugeSample {
  /** Its full name: `campus_food_…` for the project's own, `process_…` for the runtime's. */
  name: string;
  help: string;
  value: number;
  labels?: Record<string, string>;
}

/**
 * Declares gauges whose values `read` gives at each scrape. When it throws (the database they come
 * from is out), they give way to a comment saying why, so that the other metrics, an outage's
 * among them, are still scraped.
 */
export function gauges(
  names: readonly string[],
  read: () => Promise<GaugeSample[]> | GaugeSample[],
): void {
  families.push(async () => {
    let samples: GaugeSample[];
    try {
      samples = await read();
    } catch (error) {
      const why = describeError(error).replace(/\n/g, " ");
      return names.map((name) => `# ${name} unavailable: ${why}\n`).join("");
    }
    let text = "";
    let last: string | undefined;
    for (const { name, help, value, labels } of samples) {
      if (name !== last) text += header(name, help, "gauge");
      last = name;
      const rendered = labels ? `{${renderLabels(Object.keys(labels), labels)}}` : "";
      text += `${name}${rendered} ${value}\n`;
    }
    return text;
  });
}

/** Seconds since `createdAt` (an ISO timestamp), 0 for none: the age of a backlog's oldest row. */
export function ageSeconds(createdAt: string | null): number {
  return createdAt ? Math.max(0, (Date.now() - Date.parse(createdAt)) / 1000) : 0;
}

gauges(["process_resident_memory_bytes", "process_heap_used_bytes"], () => {
  const { rss, heapUsed } = Deno.memoryUsage();
  return [
    { name: "process_resident_memory_bytes", help: "Resident memory size in bytes", value: rss },
    { name: "process_heap_used_bytes", help: "V8 heap in use, in bytes", value: heapUsed },
  ];
});

/** Every metric in the Prometheus text format, for `GET /metrics`. */
export async function renderMetrics(): Promise<string> {
  let text = "";
  for (const family of families) text += await family();
  return text;
}
