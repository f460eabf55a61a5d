/**
 * Unit tests of the soak's arithmetic: the least-squares slope, the summary of a run and its
 * verdicts, and a chart with a panel per series.
 */
import assert from "node:assert/strict";
import {
  formatSoakFigures,
  renderSoakChart,
  type ServiceSample,
  slope,
  type SoakSample,
  summarizeSoak,
} from "./_soak_figures.ts";

/** A sample at `t` seconds where every service has `service` and latency is 10/50 ms. */
function sampleAt(t: number, service: Partial<ServiceSample> = {}): SoakSample {
  const s = {
    rssMb: 80,
    privateMb: 40,
    heapMb: 15,
    storageMb: 5,
    bookkeepingMb: 2,
    inboxRows: 1000,
    ...service,
  };
  return {
    t,
    services: { order: s, inventory: s, notification: s },
    queueDepth: 0,
    orders: 3000,
    p50Ms: 10,
    p99Ms: 50,
    late: 0,
  };
}

Deno.test("slope() fits the least-squares line through noisy points", () => {
  const points = [0, 10, 20, 30].map((t, i) => ({ t, value: 2 * t + (i % 2 ? 1 : -1) }));
  assert.ok(Math.abs(slope(points) - 2.04) < 1e-9);
  assert.equal(slope([{ t: 0, value: 5 }, { t: 60, value: 5 }]), 0);
});

Deno.test("slope() throws a RangeError with fewer than two distinct times", () => {
  assert.throws(() => slope([{ t: 1, value: 1 }, { t: 1, value: 2 }]), RangeError);
  assert.throws(() => slope([]), RangeError);
});

Deno.test("summarizeSoak() leaves the warm-up out of the growth and judges the targets", () => {
  // RSS climbs 10 MB in the first two minutes, then 1 MB per 10 minutes; heap is flat.
  const samples = Array.from({ length: 181 }, (_, i) => {
    const t = i * 10;
    const rssMb = t < 120 ? 70 + t / 12 : 80 + (t - 120) / 600;
    return sampleAt(t, { rssMb, storageMb: t < 360 ? t / 60 : 6, bookkeepingMb: 2 });
  });
  samples.at(-1)!.p99Ms = 70;
  const figures = summarizeSoak(samples, { retentionSeconds: 300 });
  assert.equal(figures.rssGrowthMbPer10Min.order, 1);
  assert.equal(figures.heapGrowthMbPer10Min.inventory, 0);
  assert.equal(figures.peakPrivateMb.notification, 40);
  assert.equal(figures.storageGrowthMbPer10Min.order, 0);
  assert.deepEqual(figures.storageMbAfterRetention.order, { first: 6, last: 6 });
  assert.equal(figures.firstP99Ms, 50);
  assert.equal(figures.lastP99Ms, 70);
  assert.deepEqual(figures.verdicts.map((v) => v.met), [true, true, true, true]);
  assert.match(formatSoakFigures(figures), /^met {4} {2}RSS growth/m);
});

Deno.test("summarizeSoak() tells bookkeeping growth from business rows per order", () => {
  // After the window, bookkeeping holds at 2 MB while 3,000 orders per sample add 0.3 MB.
  const samples = Array.from({ length: 100 }, (_, i) => {
    const t = i * 10;
    const bookkeepingMb = t < 360 ? t / 180 : 2;
    return sampleAt(t, { bookkeepingMb, storageMb: bookkeepingMb + 10 + i * 0.3 });
  });
  const figures = summarizeSoak(samples, { retentionSeconds: 300 });
  assert.equal(figures.bookkeepingGrowthMbPer10Min.order, 0);
  assert.equal(figures.businessBytesPerOrder.inventory, 100);
  assert.equal(figures.storageGrowthMbPer10Min.notification, 18);
  assert.equal(figures.verdicts[3].met, true);
  assert.match(formatSoakFigures(figures), /business rows per order: +order 100 bytes/);
});

Deno.test("summarizeSoak() judges nothing it could not measure", () => {
  const figures = summarizeSoak([sampleAt(10), sampleAt(20)], { retentionSeconds: 300 });
  assert.deepEqual(figures.rssGrowthMbPer10Min, {});
  assert.deepEqual(figures.storageMbAfterRetention, {});
  const growth = figures.verdicts[1];
  assert.equal(growth.value, undefined);
  assert.equal(growth.met, false);
  assert.match(formatSoakFigures(figures), /not judged {2}RSS growth/);
});

Deno.test("renderSoakChart() draws one well-formed SVG with a panel per series", () => {
  const svg = renderSoakChart([sampleAt(10), sampleAt(20)], "soak <test>");
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<g transform/g)?.length, 21);
  assert.ok(svg.includes("soak &#60;test&#62;"));
});
