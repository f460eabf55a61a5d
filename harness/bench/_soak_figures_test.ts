/**
 * Unit tests of the soak's arithmetic: the least-squares slope, the summary of a run and its
 * verdicts with samples missed, when missed samples end the soak, and a chart with a panel per
 * series.
 */
import assert from "node:assert/strict";
import {
  formatSoakFigures,
  formatSoakRow,
  MISSED_IN_A_ROW_LIMIT,
  renderSoakChart,
  type ServiceSample,
  slope,
  type SoakSample,
  summarizeSoak,
  tallyMissedSamples,
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

Deno.test("summarizeSoak() leaves missed samples out of every figure instead of counting 0", () => {
  // Memory flat, business rows 0.3 MB per sample: order misses every fifth sample and the first
  // and the last after the retention window, the broker two. Were they 0, nothing would be flat.
  const samples = Array.from({ length: 100 }, (_, i) => {
    const t = i * 10;
    const sample = sampleAt(t, { storageMb: 12 + i * 0.3 });
    if (i % 5 === 0 || i === 36 || i === 99) delete sample.services.order;
    if (i === 40 || i === 41) delete sample.queueDepth;
    return sample;
  });
  const figures = summarizeSoak(samples, { retentionSeconds: 300 });
  assert.equal(figures.rssGrowthMbPer10Min.order, 0);
  assert.equal(figures.heapGrowthMbPer10Min.order, 0);
  assert.equal(figures.storageGrowthMbPer10Min.order, 18);
  assert.equal(figures.bookkeepingGrowthMbPer10Min.order, 0);
  assert.equal(figures.businessBytesPerOrder.order, 100);
  assert.deepEqual(figures.storageMbAfterRetention.order, {
    first: 12 + 37 * 0.3,
    last: 12 + 98 * 0.3,
  });
  assert.deepEqual(figures.missedSamples, { order: 22, inventory: 0, notification: 0, queues: 2 });
  assert.deepEqual(figures.verdicts.map((v) => v.met), [true, true, true, true]);
  assert.match(
    formatSoakFigures(figures),
    /^samples missed: +order 22, inventory 0, notification 0, queues 2$/m,
  );
});

Deno.test("summarizeSoak() measures nothing for a service that missed every sample", () => {
  const samples = [10, 20, 30].map((t) => {
    const sample = sampleAt(t);
    delete sample.services.inventory;
    return sample;
  });
  const figures = summarizeSoak(samples, { retentionSeconds: 0, warmUpSeconds: 0 });
  assert.equal(figures.peakPrivateMb.inventory, undefined);
  assert.equal(figures.rssGrowthMbPer10Min.inventory, undefined);
  assert.equal(figures.businessBytesPerOrder.inventory, undefined);
  assert.equal(figures.peakPrivateMb.order, 40);
  assert.equal(figures.verdicts[0].met, false);
});

Deno.test("formatSoakRow() prints - for the values of a missed sample", () => {
  const sample = sampleAt(10);
  delete sample.services.inventory;
  delete sample.queueDepth;
  const [order, inventory, _notification, rest] = formatSoakRow(sample).split(" │ ");
  assert.match(order, /80\.0 +40\.0 +15\.0 +5\.0 +2\.0 +1000$/);
  assert.match(inventory, /^ +- +- +- +- +- +-$/);
  assert.match(rest, /^ +- +3000 /);
});

Deno.test("tallyMissedSamples() goes on through missed samples until one source misses 6 in a row", () => {
  let inARow = {};
  for (let round = 1; round < MISSED_IN_A_ROW_LIMIT; round++) {
    const tally = tallyMissedSamples(inARow, { order: "timed out", queues: "refused" });
    assert.equal(tally.giveUp, undefined);
    assert.equal(tally.inARow.order, round);
    inARow = tally.inARow;
  }
  // A sample taken starts the count again: missed samples apart never end the soak.
  const taken = tallyMissedSamples(inARow, { queues: "refused" });
  assert.deepEqual(taken.inARow, { order: 0, inventory: 0, notification: 0, queues: 6 });
  assert.equal(taken.giveUp, "queues missed 6 samples in a row, the last as refused");
  const again = tallyMissedSamples({ order: 5 }, { order: "Cannot GET /metrics" });
  assert.equal(again.giveUp, "order missed 6 samples in a row, the last as Cannot GET /metrics");
  assert.equal(tallyMissedSamples({ order: 1 }, { order: "late" }, 2).giveUp !== undefined, true);
});

Deno.test("renderSoakChart() draws one well-formed SVG with a panel per series", () => {
  const svg = renderSoakChart([sampleAt(10), sampleAt(20)], "soak <test>");
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.equal(svg.match(/<g transform/g)?.length, 21);
  assert.ok(svg.includes("soak &#60;test&#62;"));
});
