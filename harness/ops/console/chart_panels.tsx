/**
 * The panels with a chart over the last minutes: orders per second, and every queue's depth.
 * @module
 */
import { QUEUES } from "../../../shared/topology.ts";
import { type ChartSeries, LineChart } from "./chart.tsx";
import type { Snapshot } from "./live.ts";
import { STAGES } from "./order_rates.ts";
import { TableHead } from "./table_head.tsx";

/** The rates chart beside the rates themselves: small, and what it shows, for screen readers. */
const RATES_CHART = { label: "orders per second", width: 400, height: 150 };

/** The queue depths chart, across the page over its table. */
const QUEUES_CHART = { label: "queue depths", width: 960, height: 260 };

/** A distinct colour per consumed queue; other queues (retry, DLQ) take the rest by name. */
const PALETTE = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#17becf",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
];

function colourOf(queue: string): string {
  const consumed = QUEUES.indexOf(queue as typeof QUEUES[number]);
  if (consumed !== -1) return PALETTE[consumed];
  const hash = [...queue].reduce((sum, c) => (sum * 31 + c.charCodeAt(0)) >>> 0, 0);
  return PALETTE[QUEUES.length + hash % (PALETTE.length - QUEUES.length)];
}

/** Each stage's colour: confirmed green, rejected red, as one reads them. */
const STAGE_COLOURS: Record<string, string> = {
  placed: "#1f77b4",
  confirmed: "#2ca02c",
  rejected: "#d62728",
  cancelled: "#7f7f7f",
  expired: "#ff7f0e",
};

/** Orders per second now, by stage, and over the last minutes. */
export function Rates({ snapshot }: { snapshot: Snapshot }) {
  const { rates, rateHistory, since, at } = snapshot;
  const shown = STAGES.filter((stage) =>
    stage === "placed" || stage === "confirmed" || stage === "rejected" ||
    rateHistory.some((sample) => sample.rates[stage] > 0)
  );
  const series: ChartSeries[] = shown.map((stage) => ({
    name: stage,
    color: STAGE_COLOURS[stage],
    points: rateHistory.map(({ t, rates }) => ({ t, value: round(rates[stage]) })),
  }));
  return (
    <>
      <dl class="rates">
        {STAGES.map((stage) => (
          <div data-stage={stage}>
            <dt>
              <span class="swatch" style={`background:${STAGE_COLOURS[stage]}`} />
              {stage}
            </dt>
            <dd>{rates ? round(rates[stage]) : "–"}</dd>
          </div>
        ))}
      </dl>
      <LineChart series={series} from={since} to={at} {...RATES_CHART} />
    </>
  );
}

/** Every queue's ready and unacked depth over the last minutes, and now. */
export function Queues({ snapshot }: { snapshot: Snapshot }) {
  const { queueHistory, since, at } = snapshot;
  const latest = queueHistory.at(-1)?.queues ?? [];
  // Every consumed queue, and any other that held something in the window.
  const busy = new Set(
    queueHistory.flatMap((sample) =>
      sample.queues.filter((q) => q.ready + q.unacked > 0).map((q) => q.name)
    ),
  );
  const charted = latest.filter((q) => QUEUES.includes(q.name as never) || busy.has(q.name));
  const series: ChartSeries[] = charted.flatMap((queue) =>
    (["ready", "unacked"] as const).map((kind) => ({
      name: `${queue.name} ${kind}`,
      color: colourOf(queue.name),
      dashed: kind === "unacked",
      points: queueHistory.map(({ t, queues }) => ({
        t,
        value: queues.find((q) => q.name === queue.name)?.[kind] ?? 0,
      })),
    }))
  );
  return (
    <>
      <LineChart series={series} from={since} to={at} {...QUEUES_CHART} />
      <table class="queues">
        <TableHead columns={["queue", "ready", "unacked", "consumers"]} />
        <tbody>
          {charted.map((queue) => (
            <tr data-queue={queue.name} data-ready={queue.ready} data-unacked={queue.unacked}>
              <td>
                <span class="swatch" style={`background:${colourOf(queue.name)}`} />
                {queue.name}
              </td>
              <td>{queue.ready}</td>
              <td>{queue.unacked}</td>
              <td>{queue.consumers}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <p class="hint">
        Solid: ready, dashed: delivered and not yet acked. {latest.length - charted.length}{" "}
        retry and dead-letter queues empty all along are left out. RabbitMQ counts every 5 s.
      </p>
    </>
  );
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
