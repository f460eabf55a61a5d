/**
 * A line chart of several series over the last minutes, as inline SVG that scales to its box.
 * Each line steps, as a depth holds until it is read again, and carries its name, last and peak
 * values as `data-` attributes: what the browser test reads off the chart.
 * @module
 */
import { formatNumber, niceCeiling, ticksUpTo } from "../../lib/chart.ts";

/** One line of a {@linkcode LineChart}. */
export interface ChartSeries {
  name: string;
  /** A CSS colour. */
  color: string;
  /** Dashed rather than solid, for a series that goes with another of the same colour. */
  dashed?: boolean;
  /** Oldest first; `t` in milliseconds since the epoch. */
  points: ReadonlyArray<{ t: number; value: number }>;
}

/** What a {@linkcode LineChart} draws. */
export interface LineChartProps {
  series: readonly ChartSeries[];
  /** The time at the left edge, in milliseconds since the epoch. */
  from: number;
  /** The time at the right edge ("now"). */
  to: number;
  /** Says what the chart shows, for screen readers. */
  label: string;
  /** @default {720} */
  width?: number;
  /** @default {220} */
  height?: number;
}

const PAD = { left: 44, right: 12, top: 10, bottom: 24 };

/** Draws `series` between `from` and `to`, with a value axis from 0 and a time axis. */
export function LineChart(props: LineChartProps) {
  const { series, from, to, label, width = 720, height = 220 } = props;
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const span = Math.max(1, to - from);
  const lines = series.map((s) => ({ ...s, points: s.points.filter((p) => p.t >= from) }));
  const yMax = niceCeiling(Math.max(0, ...lines.flatMap((s) => s.points.map((p) => p.value))));
  const x = (t: number) => round(PAD.left + ((t - from) / span) * plotW);
  const y = (value: number) => round(PAD.top + plotH - (value / yMax) * plotH);
  const secondsBack = timeTicks(span / 1000);
  return (
    <svg
      class="chart"
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label={label}
    >
      {ticksUpTo(yMax, 4).map((value) => (
        <g class="grid">
          <line x1={PAD.left} x2={PAD.left + plotW} y1={y(value)} y2={y(value)} />
          <text x={PAD.left - 6} y={y(value) + 4} text-anchor="end">{formatNumber(value)}</text>
        </g>
      ))}
      {secondsBack.map((seconds) => (
        <text
          class="axis"
          x={x(to - seconds * 1000)}
          y={height - 6}
          text-anchor={seconds === 0 ? "end" : "middle"}
        >
          {ago(seconds)}
        </text>
      ))}
      {lines.map((s) => {
        const values = s.points.map((p) => p.value);
        return (
          <path
            d={stepPath(s.points, x, y)}
            stroke={s.color}
            stroke-dasharray={s.dashed ? "5 4" : undefined}
            data-series={s.name}
            data-last={values.at(-1) ?? 0}
            data-peak={Math.max(0, ...values)}
          >
            <title>
              {`${s.name}: ${values.at(-1) ?? 0} now, ${Math.max(0, ...values)} at most`}
            </title>
          </path>
        );
      })}
    </svg>
  );
}

/** A path that holds each value until the next point, and the last one until it ends. */
function stepPath(
  points: ReadonlyArray<{ t: number; value: number }>,
  x: (t: number) => number,
  y: (value: number) => number,
): string {
  let path = "";
  for (const [i, p] of points.entries()) {
    // Repeated values add nothing to a step line: leave them out to keep the page small.
    if (i > 0 && i < points.length - 1 && p.value === points[i - 1].value) continue;
    path += i === 0 ? `M${x(p.t)},${y(p.value)}` : `H${x(p.t)}V${y(p.value)}`;
  }
  return path;
}

/** Seconds back from now at which to label the time axis: every 10 s up to every 5 min. */
function timeTicks(spanSeconds: number): number[] {
  const step = [10, 15, 30, 60, 120, 300].find((step) => spanSeconds / step <= 6) ?? 600;
  const ticks: number[] = [];
  for (let seconds = 0; seconds <= spanSeconds + 1e-9; seconds += step) ticks.push(seconds);
  return ticks;
}

function ago(seconds: number): string {
  if (seconds === 0) return "now";
  return seconds % 60 === 0 ? `−${seconds / 60} min` : `−${seconds} s`;
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
