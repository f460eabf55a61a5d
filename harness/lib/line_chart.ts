/**
 * Several series of (x, y) points as one SVG line chart, each axis linear or logarithmic, with a
 * legend and marked x values: what a sweep needs (latency percentiles against the offered rate),
 * where `chart.ts` draws one series over time.
 * @module
 */
import { closeChart, escapeXml, formatNumber, niceCeiling, openChart, ticksUpTo } from "./chart.ts";

/** One line of the chart. */
export interface LineSeries {
  label: string;
  points: { x: number; y: number }[];
  /** A CSS colour. @default {one of a palette, by position} */
  color?: string;
  /** Drawn dashed, for a series that is a bound rather than a measurement. @default {false} */
  dashed?: boolean;
}

/** Options for {@linkcode renderSvgLineChart}. */
export interface LineChartOptions {
  /** Shown above the chart. @default {""} */
  title?: string;
  /** @default {""} */
  xLabel?: string;
  /** @default {""} */
  yLabel?: string;
  /** Logarithmic axes, for values that span orders of magnitude. @default {false} */
  logX?: boolean;
  /** @default {false} */
  logY?: boolean;
  /** x values to mark with a vertical line and their label. @default {[]} */
  marks?: { x: number; label: string }[];
  /** Pixels. @default {720} */
  width?: number;
  /** Pixels. @default {360} */
  height?: number;
}

const PALETTE = ["#1f4e8c", "#e08a1e", "#c0392b", "#2e8b57", "#7b4fa0"];

/**
 * Draws `series` as a standalone SVG document; points whose value cannot be drawn (0 or less on a
 * logarithmic axis) are left out.
 * @throws {RangeError} when no series has a point to draw
 */
export function renderSvgLineChart(series: LineSeries[], options: LineChartOptions = {}): string {
  const { title = "", xLabel = "", yLabel = "", logX = false, logY = false, marks = [] } = options;
  const { width = 720, height = 360 } = options;
  const drawable = series.map((s) => ({
    ...s,
    points: s.points.filter((p) => (!logX || p.x > 0) && (!logY || p.y > 0)),
  }));
  const all = drawable.flatMap((s) => s.points);
  if (all.length === 0) throw new RangeError("Cannot draw a line chart as no series has a point");
  const x = axis(all.map((p) => p.x).concat(marks.map((m) => m.x)), logX);
  const y = axis(all.map((p) => p.y), logY);
  const legendRows = drawable.length;
  const pad = { left: 64, right: 24, top: (title ? 44 : 16) + 16 * legendRows, bottom: 48 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const px = (v: number) => tenth(pad.left + x.position(v) * plotW);
  const py = (v: number) => tenth(pad.top + plotH - y.position(v) * plotH);
  const parts = openChart({ width, height, title });
  for (const v of y.ticks) {
    parts.push(
      `<line x1="${pad.left}" y1="${py(v)}" x2="${pad.left + plotW}" y2="${
        py(v)
      }" stroke="#e5e5e5"/>`,
      `<text x="${pad.left - 6}" y="${py(v) + 4}" text-anchor="end">${formatNumber(v)}</text>`,
    );
  }
  for (const v of x.ticks) {
    const bottom = pad.top + plotH;
    parts.push(
      `<line x1="${px(v)}" y1="${bottom}" x2="${px(v)}" y2="${bottom + 4}" stroke="#333"/>`,
      `<text x="${px(v)}" y="${bottom + 18}" text-anchor="middle">${formatNumber(v)}</text>`,
    );
  }
  for (const mark of marks) {
    // Near the right edge, the label goes left of its line.
    const left = x.position(mark.x) > 0.8;
    parts.push(
      `<line x1="${px(mark.x)}" y1="${pad.top}" x2="${px(mark.x)}" y2="${pad.top + plotH}" ` +
        `stroke="#888" stroke-dasharray="4 3"/>`,
      `<text x="${px(mark.x) + (left ? -4 : 4)}" y="${pad.top + 12}" fill="#555" ` +
        `text-anchor="${left ? "end" : "start"}">${escapeXml(mark.label)}</text>`,
    );
  }
  drawable.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const sorted = [...s.points].sort((a, b) => a.x - b.x);
    const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
    if (sorted.length > 0) {
      const path = sorted.map((p, j) => `${j === 0 ? "M" : "L"}${px(p.x)},${py(p.y)}`).join("");
      parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
      for (const p of sorted) {
        parts.push(`<circle cx="${px(p.x)}" cy="${py(p.y)}" r="3" fill="${color}"/>`);
      }
    }
    const ly = (title ? 44 : 16) + 16 * i;
    parts.push(
      `<line x1="${pad.left}" y1="${ly - 4}" x2="${pad.left + 24}" y2="${ly - 4}" ` +
        `stroke="${color}" stroke-width="2"${dash}/>`,
      `<text x="${pad.left + 30}" y="${ly}">${escapeXml(s.label)}</text>`,
    );
  });
  parts.push(...closeChart({ pad, plotW, plotH, height, xLabel, yLabel }));
  return parts.join("\n") + "\n";
}

/** An axis over `values`: where a value sits (0 to 1 along it), and where its labels go. */
function axis(values: number[], log: boolean): { position(v: number): number; ticks: number[] } {
  if (!log) {
    const max = niceCeiling(Math.max(...values));
    return { position: (v) => v / max, ticks: ticksUpTo(max, 6) };
  }
  // From the round value (1, 2 or 5 × 10^k) at or below the smallest value to the one at or
  // above the largest.
  const low = roundValues(Math.min(...values), Math.min(...values)).findLast((v) =>
    v <= Math.min(...values) * (1 + 1e-9)
  )!;
  const high = roundValues(low, Math.max(...values) * 10).find((v) =>
    v >= Math.max(...values) * (1 - 1e-9) && v > low
  )!;
  const span = Math.log10(high / low);
  // 1, 2 and 5 of each decade while there are few decades; only the powers of ten beyond.
  const ticks = roundValues(low, high).filter((v) =>
    v >= low * (1 - 1e-9) && v <= high * (1 + 1e-9) &&
    (span <= 3 || Number.isInteger(Math.log10(v)))
  );
  return { position: (v) => Math.log10(v / low) / span, ticks };
}

/** The values 1, 2 and 5 × 10^k from the decade of `from` to the decade after `to`'s. */
function roundValues(from: number, to: number): number[] {
  const values: number[] = [];
  for (let decade = 10 ** Math.floor(Math.log10(from)); decade <= to * 10; decade *= 10) {
    for (const m of [1, 2, 5]) values.push(Number((decade * m).toPrecision(6)));
  }
  return values;
}

function tenth(value: number): number {
  return Math.round(value * 10) / 10;
}
