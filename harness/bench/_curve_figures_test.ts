/** The latency curve's figures: when a step is held, the knee, and the report's rows and chart. */
import assert from "node:assert/strict";
import {
  type CurveStep,
  findKnee,
  highestHeldUnder,
  nextRate,
  summarizeStep,
} from "./_curve_figures.ts";
import { curveRows, curveSummary, renderCurveChart } from "./_curve_report.ts";
import type { SentOrders } from "./_open_loop.ts";

/** `count` orders sent at `rate`/s from t = 0, each decided `latencyMs(i)` after its send. */
function run(rate: number, count: number, latencyMs: (i: number) => number) {
  const sent: SentOrders = { sentAtMs: new Map(), httpMs: [], refused: 0, sentPerSec: rate };
  const decidedAt = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const at = (i * 1000) / rate;
    sent.sentAtMs.set(`o${i}`, at);
    decidedAt.set(`o${i}`, at + latencyMs(i));
  }
  return { sent, outcomes: { decidedAt, deliveredAt: () => decidedAt } };
}

function step(offeredPerSec: number, p95: number, held = true): CurveStep {
  const decision = { p50: p95 / 2, p95, p99: p95 * 2, max: p95 * 3, count: 100 };
  return {
    offeredPerSec,
    sentPerSec: offeredPerSec,
    orders: 100,
    refused: 0,
    decidedPerSec: offeredPerSec,
    decision,
    delivered: decision,
    cpuMsPerOrder: { order: 0.2, broker: 0.3 },
    held,
  };
}

Deno.test("summarizeStep() holds a step decided as fast as it was sent, whatever its latency", () => {
  const { sent, outcomes } = run(500, 2500, () => 40);
  const summary = summarizeStep(500, sent, outcomes, { complete: true });
  assert.equal(summary.held, true, summary.fellBehind ?? "");
  assert.equal(summary.decidedPerSec, 500);
  assert.equal(summary.decision.p99, 40);
  assert.equal(summary.delivered?.count, 2500);
});

Deno.test("summarizeStep() says a step fell behind when decisions stretch, POSTs are refused or p99 explodes", () => {
  // Each order waits 2 ms longer than the one before: a queue that grows.
  const behind = run(1000, 1000, (i) => 5 + 2 * i);
  const slow = summarizeStep(1000, behind.sent, behind.outcomes, { complete: true });
  assert.equal(slow.held, false);
  assert.match(slow.fellBehind!, /decided 333\.\d\/s of 1000\/s offered/);
  assert.match(slow.fellBehind!, /p99 \d+ ms > 1000 ms/);
  const fine = run(100, 100, () => 10);
  const refused = summarizeStep(100, { ...fine.sent, refused: 3, refusal: "503" }, fine.outcomes, {
    complete: false,
  });
  assert.match(refused.fellBehind!, /^not every order decided.*; 3 POSTs refused \(503\)$/);
});

Deno.test("findKnee() is the last held step with p95 on the floor; highestHeldUnder() the last under the bound", () => {
  const steps = [step(100, 4), step(200, 5), step(500, 12), step(1000, 20), step(2000, 400, false)];
  // The floor is 4 ms: 14 ms (floor + 10) is still on it, 20 ms is not.
  assert.equal(findKnee(steps), 500);
  // p99 is twice p95 here: 40 ms at 1,000/s is under 100 ms, and 2,000/s was not held.
  assert.equal(highestHeldUnder(steps, 100), 1000);
  assert.equal(findKnee([step(100, 4, false)]), undefined);
  assert.equal(highestHeldUnder([step(100, 60)], 100), undefined);
});

Deno.test("nextRate() goes through the default rates, then by 1,000/s up to 50,000/s", () => {
  assert.equal(nextRate(100), 200);
  assert.equal(nextRate(2000), 3000);
  assert.equal(nextRate(3500), 4000);
  assert.equal(nextRate(50_000), undefined);
});

Deno.test("curveRows(), curveSummary() and renderCurveChart() show every step, the knee and why a step fell behind", () => {
  const steps = [step(100, 4), step(200, 5), { ...step(500, 900, false), fellBehind: "p99 too" }];
  const curve = {
    stepSeconds: 5,
    webhook: true,
    steps,
    kneePerSec: 200,
    heldUnder100MsPerSec: 200,
  };
  const rows = curveRows(curve);
  assert.equal(rows.length, 4);
  assert.deepEqual(rows[1].slice(0, 4), ["100", "100", "100", "2 · 4 · 8 ms"]);
  assert.equal(rows[1][5], "order 0.20 · broker 0.30");
  assert.equal(rows[3][6], "fell behind: p99 too");
  assert.equal(
    curveSummary(curve),
    "knee at 200 orders/s (p95 POST → decision still on the floor); highest rate held with p99 " +
      "POST → decision under 100 ms: 200 orders/s; saturated at 500 orders/s",
  );
  const svg = renderCurveChart(curve, "a <curve>");
  assert.match(svg, /^<svg /);
  assert.match(svg, /a &#60;curve&#62;/);
  for (const label of ["p50 POST → decision", "p99 POST → webhook", "knee", "fell behind"]) {
    assert.ok(svg.includes(label), label);
  }
});
