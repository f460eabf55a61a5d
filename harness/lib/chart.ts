/**
 * A time series as a chart: {@linkcode renderTerminalChart} draws it with block characters for the
 * terminal, {@linkcode renderSvgChart} as an SVG file; both mark moments such as "stop" and "start".
 * @module
 */

/** One sample: `t` seconds from the start of the series, and the value seen then. */
export interface ChartPoint {
  t: number;
  value: number;
}

/** A moment to mark on the time axis, e.g. when a service stopped. */
export interface ChartMark {
  t: number;
  label: string;
}

/** Options for {@linkcode renderTerminalChart} and {@linkcode renderSvgChart}. */
export interface ChartOptions {
  /** Moments to mark with a vertical line and their label. @default {[]} */
  marks?: ChartMark[];
  /** Shown above the chart. @default {""} */
  title?: string;
  /** What the time axis counts. @default {"seconds"} */
  xLabel?: string;
  /** What the values are. @default {""} */
  yLabel?: string;
  /** Terminal columns of the plot, or SVG width in pixels. @default {64 columns, 720 pixels} */
  width?: number;
  /** Terminal rows of the plot, or SVG height in pixels. @default {10 rows, 320 pixels} */
  height?: number;
}

const BLOCKS = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

/** Draws `points` as a column chart of `width` × `height` characters, with axes and marks. */
export function renderTerminalChart(points: ChartPoint[], options: ChartOptions = {}): string {
  const { marks = [], title = "", xLabel = "seconds", yLabel = "", width = 64, height = 10 } =
    options;
  if (width < 8 || height < 2) {
    throw new RangeError(
      `Cannot draw a chart as it needs at least 8×2 cells: got ${width}×${height}`,
    );
  }
  const tMax = timeSpan(points, marks);
  const yMax = niceCeiling(Math.max(0, ...points.map((p) => p.value)));
  const columns = Array.from(
    { length: width },
    // The last column also takes the last sample, which sits at tMax itself.
    (_, c) =>
      valueIn(points, (c * tMax) / width, c === width - 1 ? Infinity : ((c + 1) * tMax) / width),
  );
  const markColumns = new Set(marks.map((m) => columnOf(m.t, tMax, width)));
  // Each row is labelled with the value at its top edge; only the top and middle rows show it.
  const rowLabel = (row: number) =>
    row === 0 || row === Math.floor(height / 2)
      ? formatNumber((yMax * (height - row)) / height)
      : "";
  const gutter = Math.max(formatNumber(yMax).length, rowLabel(Math.floor(height / 2)).length, 1);
  const lines: string[] = [];
  if (title) lines.push(title);
  if (yLabel) lines.push(`${" ".repeat(gutter + 1)}${yLabel}`);
  for (let row = 0; row < height; row++) {
    const floor = (height - 1 - row) * 8;
    let cells = "";
    for (let c = 0; c < width; c++) {
      const value = columns[c];
      const eighths = value === undefined ? 0 : Math.round((value / yMax) * height * 8);
      const fill = Math.min(8, Math.max(0, eighths - floor));
      cells += fill > 0 ? BLOCKS[fill - 1] : markColumns.has(c) ? "┊" : " ";
    }
    lines.push(`${rowLabel(row).padStart(gutter)} ┤${cells}`);
  }
  const axis = Array.from({ length: width }, (_, c) => markColumns.has(c) ? "┴" : "─").join("");
  lines.push(`${"0".padStart(gutter)} └${axis}`);
  const indent = gutter + 2;
  const step = niceStep(tMax, Math.max(2, Math.floor(width / 10)));
  let ticks = "";
  for (let i = 0; i * step <= tMax + 1e-9; i++) {
    const t = i * step;
    const column = columnOf(t, tMax, width);
    const text = formatNumber(t);
    if (column < ticks.length + 1 && ticks.length > 0) continue;
    ticks = ticks.padEnd(column) + text;
  }
  lines.push(`${" ".repeat(indent)}${ticks}  ${xLabel}`);
  for (const line of markLines(marks, tMax, width)) lines.push(" ".repeat(indent) + line);
  return lines.join("\n");
}

/** Draws `points` as a standalone SVG document: a stepped line over a filled area, with marks. */
export function renderSvgChart(points: ChartPoint[], options: ChartOptions = {}): string {
  const { marks = [], title = "", xLabel = "seconds", yLabel = "", width = 720, height = 320 } =
    options;
  const pad = { left: 56, right: 24, top: title ? 60 : 32, bottom: 48 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const tMax = timeSpan(points, marks);
  const yMax = niceCeiling(Math.max(0, ...points.map((p) => p.value)));
  const x = (t: number) => round(pad.left + (t / tMax) * plotW);
  const y = (v: number) => round(pad.top + plotH - (v / yMax) * plotH);
  const sorted = [...points].sort((a, b) => a.t - b.t);
  // A step line: the value holds until the next sample, as a queue depth does.
  let path = "";
  sorted.forEach((p, i) => {
    path += i === 0 ? `M${x(p.t)},${y(p.value)}` : `H${x(p.t)}V${y(p.value)}`;
  });
  const area = sorted.length ? `${path}H${x(sorted.at(-1)!.t)}V${y(0)}H${x(sorted[0].t)}Z` : "";
  const parts = openChart({ width, height, title });
  for (const v of ticksUpTo(yMax, 5)) {
    parts.push(
      `<line x1="${pad.left}" y1="${y(v)}" x2="${pad.left + plotW}" y2="${
        y(v)
      }" stroke="#e5e5e5"/>`,
      `<text x="${pad.left - 6}" y="${y(v) + 4}" text-anchor="end">${formatNumber(v)}</text>`,
    );
  }
  for (const t of ticksUpTo(tMax, 8)) {
    parts.push(
      `<line x1="${x(t)}" y1="${pad.top + plotH}" x2="${x(t)}" y2="${
        pad.top + plotH + 4
      }" stroke="#333"/>`,
      `<text x="${x(t)}" y="${pad.top + plotH + 18}" text-anchor="middle">${
        formatNumber(t)
      }</text>`,
    );
  }
  if (area) parts.push(`<path d="${area}" fill="#4f81bd" fill-opacity="0.25" stroke="none"/>`);
  if (path) parts.push(`<path d="${path}" fill="none" stroke="#1f4e8c" stroke-width="2"/>`);
  for (const mark of marks) {
    // Labels sit above the plot, clear of the line; near the right edge, left of the mark.
    const left = mark.t > tMax * 0.8;
    const label = escapeXml(`${mark.label} ${formatNumber(mark.t)} s`);
    parts.push(
      `<line x1="${x(mark.t)}" y1="${pad.top}" x2="${x(mark.t)}" y2="${
        pad.top + plotH
      }" stroke="#c0392b" stroke-dasharray="4 3"/>`,
      `<text x="${x(mark.t) + (left ? -4 : 4)}" y="${pad.top - 6}" fill="#c0392b" ` +
        `text-anchor="${left ? "end" : "start"}">${label}</text>`,
    );
  }
  parts.push(...closeChart({ pad, plotW, plotH, height, xLabel, yLabel }));
  return parts.join("\n") + "\n";
}

/** How large a chart's picture is, and what it is titled. */
export interface ChartCanvas {
  width: number;
  height: number;
  /** Centred above the plot; none when empty or not given. */
  title?: string;
}

/**
 * The start of a chart's SVG, as lines: the opening tag, a white background (an SVG is transparent
 * otherwise, and a dark page would show through) and the title.
 */
export function openChart(canvas: ChartCanvas): string[] {
  const { width, height, title } = canvas;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    ...(title
      ? [
        `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${
          escapeXml(title)
        }</text>`,
      ]
      : []),
  ];
}

/** Where a chart's plot sits in its picture, and what its axes are labelled. */
export interface ChartFrame {
  pad: { left: number; top: number };
  plotW: number;
  plotH: number;
  height: number;
  xLabel: string;
  yLabel?: string;
}

/** The end of a chart's SVG, as lines: its two axes with their labels, and the closing tag. */
export function closeChart(frame: ChartFrame): string[] {
  const { pad, plotW, plotH, height, xLabel, yLabel } = frame;
  return [
    `<path d="M${pad.left},${pad.top}V${pad.top + plotH}H${
      pad.left + plotW
    }" fill="none" stroke="#333"/>`,
    `<text x="${pad.left + plotW / 2}" y="${height - 10}" text-anchor="middle">${
      escapeXml(xLabel)
    }</text>`,
    ...(yLabel
      ? [
        `<text transform="translate(14 ${pad.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
          escapeXml(yLabel)
        }</text>`,
      ]
      : []),
    "</svg>",
  ];
}

/** Escapes the five XML special characters. */
export function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function timeSpan(points: ChartPoint[], marks: ChartMark[]): number {
  return Math.max(1e-9, ...points.map((p) => p.t), ...marks.map((m) => m.t));
}

function columnOf(t: number, tMax: number, width: number): number {
  return Math.min(width - 1, Math.max(0, Math.floor((t / tMax) * width)));
}

/** The largest value sampled in [from, to), or the last one before it: a depth holds until sampled. */
function valueIn(points: ChartPoint[], from: number, to: number): number | undefined {
  let inside: number | undefined;
  let before: number | undefined;
  for (const p of points) {
    if (p.t >= from && p.t < to) inside = Math.max(inside ?? 0, p.value);
    else if (p.t < from) before = p.value;
  }
  return inside ?? before;
}

/** Places each mark's "▲ label" under its column, on the first line where it does not overlap. */
function markLines(marks: ChartMark[], tMax: number, width: number): string[] {
  const lines: string[] = [];
  for (const mark of [...marks].sort((a, b) => a.t - b.t)) {
    const column = columnOf(mark.t, tMax, width);
    const text = `▲ ${mark.label} ${formatNumber(mark.t)} s`;
    const i = lines.findIndex((line) => line.length < column);
    if (i === -1) lines.push(" ".repeat(column) + text);
    else lines[i] = lines[i].padEnd(column) + text;
  }
  return lines;
}

/** A round step (1, 2 or 5 × 10^k) that cuts `span` into at most about `count` pieces. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * magnitude).find((step) => step >= raw) ?? 10 * magnitude;
}

/** The smallest round number (by {@linkcode niceStep}) at or above `value`, and at least 1. */
export function niceCeiling(value: number): number {
  if (value <= 1) return 1;
  const step = niceStep(value, 5);
  return Math.ceil(value / step) * step;
}

/** Round values from 0 up to `max`, about `count` of them: where an axis puts its labels. */
export function ticksUpTo(max: number, count: number): number[] {
  const step = niceStep(max, count);
  const ticks: number[] = [];
  for (let i = 0; i * step <= max + 1e-9; i++) ticks.push(round(i * step));
  return ticks;
}

/** A value for an axis label: an integer as it is, else to one decimal. */
export function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(round(value));
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
