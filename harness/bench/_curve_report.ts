/**
 * The latency curve in the benchmark's report: a row per offered rate, a line with the knee and
 * the highest rate held under 100 ms, and the SVG chart of the percentiles against the rate.
 * @module
 */
import { renderSvgLineChart } from "../lib/line_chart.ts";
import { type CurveResult, HELD_P99_MS } from "./_curve_figures.ts";

/** The curve's table, the header first: a row per step of the sweep. */
export function curveRows(curve: CurveResult): string[][] {
  const rows = [[
    "offered/s",
    "sent/s",
    "decided/s",
    "POST → decision p50 · p95 · p99",
    ...curve.webhook ? ["POST → webhook p50 · p95 · p99"] : [],
    "CPU per order, ms",
    "",
  ]];
  for (const step of curve.steps) {
    const spread = (p: { p50: number; p95: number; p99: number }) =>
      `${p.p50} · ${p.p95} · ${p.p99} ms`;
    rows.push([
      count(step.offeredPerSec),
      count(step.sentPerSec),
      count(step.decidedPerSec),
      step.decision.count > 0 ? spread(step.decision) : "–",
      ...curve.webhook ? [step.delivered ? spread(step.delivered) : "–"] : [],
      perOrder(step.cpuMsPerOrder),
      step.held ? "held" : `fell behind: ${step.fellBehind}`,
    ]);
  }
  return rows;
}

/** One sentence: how the sweep ran, its knee and the highest rate held under 100 ms. */
export function curveSummary(curve: CurveResult): string {
  const last = curve.steps.at(-1);
  const knee = curve.kneePerSec === undefined
    ? "no knee (latency left the floor at the first step)"
    : `knee at ${count(curve.kneePerSec)} orders/s (p95 POST → decision still on the floor)`;
  const held = curve.heldUnder100MsPerSec === undefined
    ? `no rate held with p99 under ${HELD_P99_MS} ms`
    : `highest rate held with p99 POST → decision under ${HELD_P99_MS} ms: ${
      count(curve.heldUnder100MsPerSec)
    } orders/s`;
  const end = last && !last.held
    ? `saturated at ${count(last.offeredPerSec)} orders/s`
    : "not saturated by the last rate";
  return `${knee}; ${held}; ${end}`;
}

/** The curve as an SVG chart: p50, p95 and p99 POST → decision, and p99 to the webhook. */
export function renderCurveChart(curve: CurveResult, title: string): string {
  const steps = curve.steps.filter((step) => step.decision.count > 0);
  const line = (label: string, pick: (step: typeof steps[number]) => number | undefined) => ({
    label,
    points: steps.flatMap((step) => {
      const y = pick(step);
      return y === undefined ? [] : [{ x: step.offeredPerSec, y }];
    }),
  });
  return renderSvgLineChart(
    [
      line("p50 POST → decision", (step) => step.decision.p50),
      line("p95 POST → decision", (step) => step.decision.p95),
      line("p99 POST → decision", (step) => step.decision.p99),
      ...curve.webhook
        ? [{ ...line("p99 POST → webhook", (step) => step.delivered?.p99), dashed: true }]
        : [],
    ],
    {
      title,
      xLabel: "offered rate, orders/s (open loop)",
      yLabel: "milliseconds",
      logX: true,
      logY: true,
      marks: [
        ...curve.kneePerSec === undefined ? [] : [{ x: curve.kneePerSec, label: "knee" }],
        ...curve.steps.filter((step) => !step.held).map((step) => ({
          x: step.offeredPerSec,
          label: "fell behind",
        })),
      ],
    },
  );
}

/**
 * Milliseconds of CPU per order by process: `order 0.21 · inventory 0.15 · …`; to 0.01 ms, as the
 * kernel counts CPU in ticks of 10 ms and a run's share of a tick per order is below that.
 */
export function perOrder(cpuMs: Record<string, number>): string {
  return Object.entries(cpuMs).map(([name, ms]) => `${name} ${ms.toFixed(2)}`).join(" · ");
}

/** A count with thousands separators: `12,345`. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}
