/**
 * The latency curve's arithmetic, apart from the stacks that measure it: when a step is held, the
 * knee, the highest rate held under a bound, and the rates a sweep goes through.
 * @module
 */
import { round } from "../lib/format.ts";
import { type Percentiles, percentiles } from "../lib/percentiles.ts";
import { type SentOrders, sinceSent } from "./_open_loop.ts";

/** The offered rates of a sweep given none, orders/s; past the last, {@linkcode nextRate} goes on. */
export const DEFAULT_CURVE_RATES: readonly number[] = [100, 200, 500, 1000, 1500, 2000];

/** A step whose p99 POST → decision passes this has exploded: the sweep ends there. */
export const EXPLODED_P99_MS = 1000;

/** The latency bound of the figure "highest rate held with p99 under", in milliseconds. */
export const HELD_P99_MS = 100;

/**
 * A step is held when orders are decided at this share of the offered rate or more: less than 1,
 * as one slow decision at either end of a step stretches the span they are counted over.
 */
const HELD_SHARE = 0.9;

/** How long a step's last orders may take to be decided (and delivered), in milliseconds. */
export const STEP_DRAIN_MS = 60_000;

/** One rate of the sweep. */
export interface CurveStep {
  /** Orders per second asked for. */
  offeredPerSec: number;
  /** Orders per second really sent: a busy harness may fall behind the rate asked for. */
  sentPerSec: number;
  /** Orders accepted with 202. */
  orders: number;
  /** POSTs not accepted (503 once the order service's request slots are full). */
  refused: number;
  /** Orders decided per second, from the step's first decision to its last. */
  decidedPerSec: number;
  /** From sending the POST until the order service logged its decision, in milliseconds. */
  decision: Percentiles;
  /** From sending the POST until the notification reached the webhook receiver. */
  delivered?: Percentiles;
  /** Milliseconds of CPU per order, by process, over the step and its drain. */
  cpuMsPerOrder: Record<string, number>;
  /** Decisions kept up with the offered rate and p99 did not explode. */
  held: boolean;
  /** Why the step was not held. */
  fellBehind?: string;
}

/** A sweep: see {@linkcode measureCurve}. */
export interface CurveResult {
  stepSeconds: number;
  /** Whether notification delivered to a local webhook receiver (and `delivered` is timed). */
  webhook: boolean;
  steps: CurveStep[];
  /**
   * The highest offered rate up to which every step was held with p95 POST → decision still on
   * the floor (see {@linkcode findKnee}); undefined when the first step already left it.
   */
  kneePerSec?: number;
  /** The highest offered rate held with p99 POST → decision under {@linkcode HELD_P99_MS}. */
  heldUnder100MsPerSec?: number;
}

/**
 * The offered rate after `rate` when no rates are given: {@linkcode DEFAULT_CURVE_RATES}, then
 * 1,000 orders/s more each step, or undefined past 50,000/s, which no two cores reach.
 */
export function nextRate(rate: number): number | undefined {
  const next = DEFAULT_CURVE_RATES.find((r) => r > rate) ??
    (Math.floor(rate / 1000) + 1) * 1000;
  return next > 50_000 ? undefined : next;
}

/** One step's figures from what was sent and seen, and whether it was held. */
export function summarizeStep(
  offeredPerSec: number,
  sent: SentOrders,
  outcomes: {
    decidedAt: ReadonlyMap<string, number>;
    deliveredAt(): ReadonlyMap<string, number>;
  },
  options: { complete: boolean },
): CurveStep {
  const decisionMs = sinceSent(sent.sentAtMs, outcomes.decidedAt);
  const deliveredMs = sinceSent(sent.sentAtMs, outcomes.deliveredAt());
  // Loops, not Math.min(...): a step at thousands of orders/s has too many for arguments.
  let firstDecided = Infinity;
  let lastDecided = -Infinity;
  for (const id of sent.sentAtMs.keys()) {
    const at = outcomes.decidedAt.get(id);
    if (at === undefined) continue;
    firstDecided = Math.min(firstDecided, at);
    lastDecided = Math.max(lastDecided, at);
  }
  // Over the span of the decisions, as the sending rate is over the span of the sends: a system
  // that keeps up decides in a span as long as the sending took, shifted by the latency; one that
  // falls behind stretches it.
  const decidedPerSec = decisionMs.length > 1
    ? round((decisionMs.length - 1) / Math.max(0.001, (lastDecided - firstDecided) / 1000), 1)
    : decisionMs.length;
  const decision = decisionMs.length > 0 ? percentiles(decisionMs) : NONE;
  const reasons = [
    ...!options.complete
      ? [`not every order decided and delivered within ${STEP_DRAIN_MS / 1000} s`]
      : [],
    ...sent.refused > 0 ? [`${sent.refused} POSTs refused (${sent.refusal})`] : [],
    ...decidedPerSec < HELD_SHARE * offeredPerSec
      ? [
        `decided ${decidedPerSec}/s of ${offeredPerSec}/s offered` +
        (sent.sentPerSec < HELD_SHARE * offeredPerSec
          ? ` (the harness sent only ${sent.sentPerSec}/s)`
          : ""),
      ]
      : [],
    ...decision.p99 > EXPLODED_P99_MS ? [`p99 ${decision.p99} ms > ${EXPLODED_P99_MS} ms`] : [],
  ];
  return {
    offeredPerSec,
    sentPerSec: sent.sentPerSec,
    orders: sent.sentAtMs.size,
    refused: sent.refused,
    decidedPerSec,
    decision,
    ...deliveredMs.length > 0 && { delivered: percentiles(deliveredMs) },
    cpuMsPerOrder: {},
    held: reasons.length === 0,
    ...reasons.length > 0 && { fellBehind: reasons.join("; ") },
  };
}

/** The percentiles of a step in which nothing was decided. */
const NONE: Percentiles = { p50: 0, p95: 0, p99: 0, max: 0, count: 0 };

/**
 * The knee: the highest offered rate up to which every step was held and p95 POST → decision
 * stayed on the floor, within twice the sweep's lowest p95 or 10 ms above it, whichever is more.
 * p95 rather than p99: one slow commit among a few hundred orders moves p99 by 3× between runs of
 * the same rate on a shared machine, and a knee should not move with it.
 */
export function findKnee(steps: readonly CurveStep[]): number | undefined {
  const held = steps.filter((step) => step.held);
  if (held.length === 0) return undefined;
  const floor = Math.min(...held.map((step) => step.decision.p95));
  const ceiling = Math.max(2 * floor, floor + 10);
  let knee: number | undefined;
  for (const step of steps) {
    if (!step.held || step.decision.p95 > ceiling) break;
    knee = step.offeredPerSec;
  }
  return knee;
}

/** The highest offered rate of a held step whose p99 POST → decision is under `p99Ms`. */
export function highestHeldUnder(steps: readonly CurveStep[], p99Ms: number): number | undefined {
  const under = steps.filter((step) => step.held && step.decision.p99 < p99Ms);
  return under.length > 0 ? Math.max(...under.map((step) => step.offeredPerSec)) : undefined;
}
