/**
 * The benchmark's report: the figures beside their targets (met or not), the drain and end-to-end
 * figures per store and number of inventory instances, the latency curve, and the machine, as a
 * table or one JSON object.
 * @module
 */
import { round } from "../lib/format.ts";
import type { Machine } from "./_stats.ts";
import type { Percentiles } from "../lib/percentiles.ts";
import type { DrainResult, EndToEndResult, LatencyResult } from "./_measure.ts";
import type { CeilingResult, EndToEndCeilingResult } from "./_ceilings.ts";
import type { CurveResult } from "./_curve_figures.ts";
import { count, curveRows, curveSummary, perOrder } from "./_curve_report.ts";
import type { PeakRss, StoreKind } from "./_stack.ts";
import type { IdleResult } from "./_idle.ts";
import type { WebhookResult } from "./_webhook.ts";

/** Drain and end to end for one store and number of inventory instances. */
export interface ScaleRow {
  store: StoreKind;
  instances: number;
  /** The broker it ran on, when not the single node at AMQP_URL: `3-node cluster`. */
  broker?: string;
  drain?: DrainResult;
  /** `drain.msgPerSec` as a share of the ceiling. */
  drainRatio?: number;
  endToEnd?: EndToEndResult;
  /** `endToEnd.ordersPerSec` as a share of the end-to-end ceiling. */
  endToEndRatio?: number;
}

/**
 * The price of the webhook: end to end and the latency run on the primary configuration with
 * notification delivering to a local receiver, timed up to the delivery.
 */
export interface WebhookHop {
  endToEnd: EndToEndResult;
  /** `notified` (recorded) and `delivered` (at the receiver), of the same orders. */
  latency: LatencyResult;
}

/** One of the {@linkcode TARGETS} and whether this run met it. */
export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  met: boolean;
}

/** Everything one run measured; `--json` prints it as it is. */
export interface BenchReport {
  command: string;
  machine: Machine;
  /** The one-minute load average before the run: other work on the machine skews the figures. */
  loadAverageBefore: number;
  settings: Record<string, string | number | boolean>;
  ceiling?: CeilingResult;
  /** The bare pipeline of an order's hops: the reference of end to end. */
  endToEndCeiling?: EndToEndCeilingResult;
  /** The configuration the targets are checked on: the requested store, the first count. */
  primary: { store: StoreKind; instances: number };
  scale: ScaleRow[];
  latency?: LatencyResult;
  /** MB (10^6 bytes), the largest of each service's instances over every stack of the run. */
  peakRssMb: PeakRss;
  /**
   * MB, the peak of each service's private memory (`RssAnon`, sampled): its RSS without the code of
   * the Deno executable, which every service maps from the same file.
   */
  peakPrivateMb: PeakRss;
  /** Each service's resident memory when idle, beside a bare Deno process with its dependencies. */
  idle?: IdleResult;
  /** The webhook sender's drain of pending deliveries to a local receiver. */
  webhook?: WebhookResult;
  /** End to end and latency again, up to the delivery to a local webhook receiver. */
  webhookHop?: WebhookHop;
  /** The latency curve, with `--curve`. */
  curve?: CurveResult;
  targets: TargetCheck[];
  durationSeconds: number;
}

/**
 * What the system is held to on a 2-core machine with every durability setting on: close to the
 * broker's limit, as ratios of the ceilings measured in the same run (drain ≥ 0.85× the hop's on
 * SQLite and 0.5× on PostgreSQL, end to end ≥ 0.6× the bare pipeline's, and on PostgreSQL ≥ 0.7×
 * SQLite's end to end in the same run), 1,000 orders/s end to end, p99 POST → decision under 25 ms
 * and POST → notification under 50 ms at 200 orders/s, 60 MB of private memory per service under
 * that load, and an idle service within 10 MB of the resident memory of a bare Deno process with
 * the same dependencies (RSS itself includes the code of the Deno executable every service maps,
 * so it is reported, not judged).
 */
export const TARGETS = {
  drainRatio: { sqlite: 0.85, postgres: 0.5 } satisfies Record<StoreKind, number>,
  ordersPerSec: 1000,
  endToEndRatio: 0.6,
  postgresOfSqlite: 0.7,
  decidedP99Ms: 25,
  notifiedP99Ms: 50,
  privateMb: 60,
  idleOverBareMb: 10,
};

/** Checks the figures of `report` that were measured against {@linkcode TARGETS}. */
export function checkTargets(
  report: Pick<BenchReport, "primary" | "scale" | "latency" | "peakPrivateMb" | "idle">,
): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const primary = primaryRow(report);
  if (primary?.drainRatio !== undefined) {
    const least = TARGETS.drainRatio[primary.store];
    checks.push({
      name: "backlog drain",
      target: `≥ ${least}× ceiling`,
      measured: `${primary.drainRatio}× ceiling`,
      met: primary.drainRatio >= least,
    });
  }
  if (primary?.endToEnd) {
    checks.push({
      name: "end to end",
      target: `≥ ${count(TARGETS.ordersPerSec)} orders/s`,
      measured: `${count(primary.endToEnd.ordersPerSec)} orders/s`,
      met: primary.endToEnd.ordersPerSec >= TARGETS.ordersPerSec,
    });
  }
  if (primary?.store === "sqlite" && primary.endToEndRatio !== undefined) {
    checks.push({
      name: "end to end against the bare pipeline",
      target: `≥ ${TARGETS.endToEndRatio}× e2e ceiling`,
      measured: `${primary.endToEndRatio}× e2e ceiling`,
      met: primary.endToEndRatio >= TARGETS.endToEndRatio,
    });
  }
  const sqlite = report.scale.find((row) =>
    row.broker === undefined && row.store === "sqlite" && row.instances === 1
  );
  if (primary?.store === "postgres" && primary.endToEnd && sqlite?.endToEnd) {
    const share = round(primary.endToEnd.ordersPerSec / sqlite.endToEnd.ordersPerSec, 2);
    checks.push({
      name: "end to end against SQLite's",
      target: `≥ ${TARGETS.postgresOfSqlite}× SQLite's`,
      measured: `${share}× SQLite's`,
      met: share >= TARGETS.postgresOfSqlite,
    });
  }
  if (report.latency) {
    const { rate, confirmed, notified } = report.latency;
    checks.push({
      name: `p99 POST → decision at ${rate}/s`,
      target: `< ${TARGETS.decidedP99Ms} ms`,
      measured: `${confirmed.p99} ms`,
      met: confirmed.p99 < TARGETS.decidedP99Ms,
    }, {
      name: `p99 POST → notification at ${rate}/s`,
      target: `< ${TARGETS.notifiedP99Ms} ms`,
      measured: `${notified.p99} ms`,
      met: notified.p99 < TARGETS.notifiedP99Ms,
    });
  }
  for (const [service, mb] of Object.entries(report.peakPrivateMb)) {
    checks.push({
      name: `peak private memory ${service}`,
      target: `≤ ${TARGETS.privateMb} MB`,
      measured: `${mb} MB`,
      met: mb <= TARGETS.privateMb,
    });
  }
  const { idle } = report;
  for (const [service, mb] of Object.entries(idle?.servicesMb ?? {})) {
    const over = round(mb - idle!.bareMb, 1);
    checks.push({
      name: `idle RSS ${service}`,
      target: `≤ bare Deno + ${TARGETS.idleOverBareMb} MB`,
      measured: `${mb} MB (bare + ${over} MB)`,
      met: over <= TARGETS.idleOverBareMb,
    });
  }
  return checks;
}

/** The report as text: the machine, the figures with their targets, and the scale table. */
export function formatReport(report: BenchReport): string {
  const lines = [
    `machine: ${describe(report.machine)}; load average ${
      report.loadAverageBefore.toFixed(2)
    } before the run`,
    `command: ${report.command}`,
    "",
    ...table(figureRows(report)),
  ];
  const scale = scaleRows(report);
  if (scale) {
    lines.push(
      "",
      "drain and end to end per broker, store and inventory instances (deadlocks: drain / end to end):",
      ...table(scale),
    );
  }
  if (report.curve) {
    lines.push("", curveHeading(report.curve), ...table(curveRows(report.curve)));
    lines.push(curveSummary(report.curve));
  }
  lines.push("", verdictLine(report));
  return lines.join("\n");
}

/**
 * The report as a markdown section for `docs/performance.md` (`deno task bench --report <file>`):
 * a heading with the date measured, the machine and the command, the figures beside their targets,
 * the scale table, and the curve's table with a link to its chart when `curveChart` names one. The
 * tables are padded as `deno fmt` pads them.
 */
export function formatMarkdownReport(
  report: BenchReport,
  measuredOn: Date,
  options: { curveChart?: string } = {},
): string {
  const date = measuredOn.toISOString().slice(0, 10);
  const lines = [
    `## Figures of ${date}`,
    "",
    `Measured on ${date} with \`${report.command}\` (${report.durationSeconds} s), on ` +
    `${describe(report.machine)}; load average ${
      report.loadAverageBefore.toFixed(2)
    } before the run.`,
    "",
    ...markdownTable(figureRows(report).map((row) => row.map(markdownCell))),
  ];
  const scale = scaleRows(report);
  if (scale) {
    lines.push(
      "",
      "Drain and end to end per broker, store and inventory instances (deadlocks: drain / end to end):",
      "",
      ...markdownTable(scale),
    );
  }
  if (report.curve) {
    const heading = curveHeading(report.curve);
    lines.push("", `${heading[0].toUpperCase()}${heading.slice(1)}`, "");
    lines.push(...markdownTable(curveRows(report.curve).map((row) => row.map(markdownCell))));
    lines.push("", `${curveSummary(report.curve)}.`);
    if (options.curveChart) lines.push("", `![The latency curve](${options.curveChart})`);
  }
  lines.push("", `${verdictLine(report)}.`, "");
  return lines.join("\n");
}

function describe(machine: Machine): string {
  return `${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGib} GiB, ${machine.os}; ` +
    `Deno ${machine.deno}, RabbitMQ ${machine.rabbitmq}`;
}

/** The figures with their targets, the header first; a detail's figure starts with two spaces. */
function figureRows(report: BenchReport): string[][] {
  const { ceiling, latency } = report;
  const rows: string[][] = [["figure", "measured", "target", ""]];
  const target = (name: string) => report.targets.find((t) => t.name === name);
  const verdict = (check?: TargetCheck) => check ? (check.met ? "met" : "NOT MET") : "";
  if (ceiling) {
    rows.push([
      `broker ceiling: consume → publish (confirm) → ack, ${count(ceiling.messages)} msgs`,
      `${count(ceiling.msgPerSec)} msg/s`,
      "(the limit)",
      "",
    ]);
    rows.push(["  CPU (cores)", cores(ceiling.cpuCores), "", ""]);
    rows.push([
      "  publishing the backlog with confirms",
      `${count(ceiling.publishMsgPerSec)} msg/s`,
      "",
      "",
    ]);
  }
  const pipeline = report.endToEndCeiling;
  if (pipeline) {
    rows.push([
      `end-to-end ceiling: ${
        count(pipeline.orders)
      } orders through OrderPlaced → InventoryReserved → OrderConfirmed, no HTTP, no database`,
      `${count(pipeline.ordersPerSec)} orders/s`,
      "(the limit)",
      "",
    ]);
    rows.push(["  CPU (cores)", cores(pipeline.cpuCores), "", ""]);
    rows.push(["  CPU per order (ms)", perOrder(pipeline.cpuMsPerOrder), "", ""]);
  }
  const primary = primaryRow(report);
  if (primary?.drain) {
    const { drain } = primary;
    const check = target("backlog drain");
    rows.push([
      `backlog drain: ${count(drain.messages)} OrderPlaced, ${label(primary)}`,
      `${count(drain.msgPerSec)} msg/s` +
      (primary.drainRatio === undefined ? "" : ` = ${primary.drainRatio}× ceiling`),
      check?.target ?? "",
      verdict(check),
    ]);
    rows.push([
      `  start-up counted (${drain.startupSeconds} s of ${
        round(drain.startupSeconds + drain.seconds)
      } s)`,
      `${count(drain.msgPerSecWithStartup)} msg/s`,
      "",
      "",
    ]);
    rows.push(["  CPU (cores)", cores(drain.cpuCores), "", ""]);
    rows.push(["  CPU per message (ms)", perOrder(drain.cpuMsPerMessage), "", ""]);
  }
  if (primary?.endToEnd) {
    const e2e = primary.endToEnd;
    const check = target("end to end");
    rows.push([
      `end to end: ${count(e2e.orders)} orders over HTTP, ${e2e.concurrency} at once, ${
        label(primary)
      }`,
      `${count(e2e.ordersPerSec)} orders/s` +
      (primary.endToEndRatio === undefined ? "" : ` = ${primary.endToEndRatio}× e2e ceiling`),
      check?.target ?? "",
      verdict(check),
    ]);
    for (const name of ["end to end against the bare pipeline", "end to end against SQLite's"]) {
      const share = target(name);
      if (share) rows.push([`  ${name}`, share.measured, share.target, verdict(share)]);
    }
    rows.push(["  POST /order latency", spread(e2e.http, ["p50", "p99"]), "", ""]);
    rows.push(["  CPU (cores)", cores(e2e.cpuCores), "", ""]);
    rows.push(["  CPU per order (ms)", perOrder(e2e.cpuMsPerOrder), "", ""]);
  }
  if (latency) {
    const decided = target(`p99 POST → decision at ${latency.rate}/s`);
    const check = target(`p99 POST → notification at ${latency.rate}/s`);
    rows.push([
      `steady rate: ${latency.rate}/s for ${latency.seconds} s (${
        count(latency.orders)
      } orders, sent at ${latency.sentPerSec}/s)`,
      "",
      "",
      "",
    ]);
    rows.push(["  POST /order latency", spread(latency.http, ["p50", "p95", "p99"]), "", ""]);
    rows.push([
      "  POST → CONFIRMED",
      spread(latency.confirmed, ["p50", "p95", "p99"]),
      decided ? `p99 ${decided.target}` : "",
      verdict(decided),
    ]);
    rows.push([
      "  POST → notification",
      spread(latency.notified, ["p50", "p95", "p99"]),
      check ? `p99 ${check.target}` : "",
      verdict(check),
    ]);
    rows.push(["  CPU per order (ms)", perOrder(latency.cpuMsPerOrder), "", ""]);
  }
  for (const [service, mb] of Object.entries(report.peakRssMb)) {
    const check = target(`peak private memory ${service}`);
    rows.push([
      `peak RSS ${service} (private part)`,
      `${mb} MB (${report.peakPrivateMb[service as keyof PeakRss] ?? "–"} MB)`,
      check ? `private ${check.target}` : "",
      verdict(check),
    ]);
  }
  if (report.idle) {
    rows.push([
      `bare Deno with the services' dependencies, ${report.idle.settleSeconds} s idle`,
      `${report.idle.bareMb} MB`,
      "",
      "",
    ]);
    for (const [service, mb] of Object.entries(report.idle.servicesMb)) {
      const check = target(`idle RSS ${service}`);
      rows.push([
        `  idle RSS ${service}`,
        check?.measured ?? `${mb} MB`,
        check?.target ?? "",
        verdict(check),
      ]);
    }
  }
  if (report.webhook) {
    rows.push([
      `webhook sender: ${count(report.webhook.deliveries)} deliveries to a local receiver, sqlite`,
      `${count(report.webhook.deliveriesPerSec)} deliveries/s`,
      "",
      "",
    ]);
  }
  if (report.webhookHop) {
    const { endToEnd: e2e, latency: hop } = report.webhookHop;
    const without = primary?.endToEnd;
    rows.push([
      `with a webhook: notification delivers to a local verifying receiver, ${
        primary ? label(primary) : report.primary.store
      }`,
      "",
      "",
      "",
    ]);
    rows.push([
      `  end to end until delivered: ${count(e2e.orders)} orders, ${e2e.concurrency} at once`,
      `${count(e2e.ordersPerSec)} orders/s` +
      (without ? ` (${count(without.ordersPerSec)} up to recorded, no webhook)` : ""),
      "",
      "",
    ]);
    rows.push(["    CPU per order (ms)", perOrder(e2e.cpuMsPerOrder), "", ""]);
    rows.push([
      `  steady rate ${hop.rate}/s: POST → notification recorded`,
      spread(hop.notified, ["p50", "p95", "p99"]),
      "",
      "",
    ]);
    rows.push([
      `  steady rate ${hop.rate}/s: POST → delivered to the webhook`,
      spread(hop.delivered!, ["p50", "p95", "p99"]),
      "",
      "",
    ]);
    rows.push(["    CPU per order (ms)", perOrder(hop.cpuMsPerOrder), "", ""]);
  }
  return rows;
}

/** Drain and end to end per configuration, when more than one was measured or on PostgreSQL. */
function scaleRows(report: BenchReport): string[][] | undefined {
  if (report.scale.length > 1 || report.primary.store === "postgres") {
    const scale: string[][] = [[
      "broker",
      "store",
      "inventories",
      "drain msg/s",
      "× ceiling",
      "end to end orders/s",
      "× e2e ceiling",
      "POST p50",
      "POST p99",
      "deadlocks",
    ]];
    for (const row of report.scale) {
      scale.push([
        row.broker ?? "1 node",
        row.store,
        String(row.instances),
        row.drain ? count(row.drain.msgPerSec) : "–",
        row.drainRatio === undefined ? "–" : String(row.drainRatio),
        row.endToEnd ? count(row.endToEnd.ordersPerSec) : "–",
        row.endToEndRatio === undefined ? "–" : String(row.endToEndRatio),
        row.endToEnd ? `${row.endToEnd.http.p50} ms` : "–",
        row.endToEnd ? `${row.endToEnd.http.p99} ms` : "–",
        row.store === "postgres"
          ? `${row.drain?.deadlocks ?? "–"} / ${row.endToEnd?.deadlocks ?? "–"}`
          : "–",
      ]);
    }
    return scale;
  }
  return undefined;
}

function verdictLine(report: BenchReport): string {
  const missed = report.targets.filter((t) => !t.met);
  return missed.length === 0
    ? `every target met (${report.targets.length}); took ${report.durationSeconds} s`
    : `${missed.length} of ${report.targets.length} targets not met: ${
      missed.map((t) => `${t.name} ${t.measured} (target ${t.target})`).join("; ")
    }; took ${report.durationSeconds} s`;
}

function primaryRow(report: Pick<BenchReport, "primary" | "scale">): ScaleRow | undefined {
  return report.scale.find((row) =>
    row.broker === undefined && row.store === report.primary.store &&
    row.instances === report.primary.instances
  );
}

function label(row: ScaleRow): string {
  return `${row.broker ? `${row.broker}, ` : ""}${row.store}, inventory ×${row.instances}`;
}

function spread(p: Percentiles, which: Array<"p50" | "p95" | "p99">): string {
  return which.map((name) => `${name} ${p[name]}`).join(" · ") + " ms";
}

function cores(cpu: Record<string, number>): string {
  return Object.entries(cpu).map(([name, n]) => `${name} ${n.toFixed(2)}`).join(" · ");
}

/** The heading of the curve's table: the step length, and the webhook when there was one. */
function curveHeading(curve: CurveResult): string {
  return `latency curve: each rate for ${curve.stepSeconds} s, open loop` +
    (curve.webhook ? ", notification delivering to a local verifying webhook receiver" : "") +
    "; CPU per order over the step:";
}

/** A figure's cell for markdown: a detail's leading spaces become a dot, `|` is escaped. */
function markdownCell(cell: string): string {
  const escaped = cell.replaceAll("|", "\\|");
  return escaped.startsWith("  ") ? `· ${escaped.trimStart()}` : escaped;
}

/** `rows` as a markdown table, the first row as the header, padded as `deno fmt` pads it. */
function markdownTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(3, ...rows.map((row) => [...row[i]].length)));
  const format = (row: string[]) =>
    `| ${row.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join(" | ")} |`;
  return [format(rows[0]), format(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(format)];
}

/** Pads `rows` into columns, the first row as the header with a rule under it. */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => [...row[i]].length)));
  const format = (row: string[]) =>
    row.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join("  ").trimEnd();
  return [format(rows[0]), format(widths.map((w) => "─".repeat(w))), ...rows.slice(1).map(format)];
}
