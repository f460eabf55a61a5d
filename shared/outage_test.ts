import assert from "node:assert/strict";
import type { Store } from "./store.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { type OutageOptions, type OutageWatch, watchOutages } from "./outage.ts";
import { renderMetrics } from "./metrics.ts";

/** The failure of a statement that a database that answers gives: the message's fault. */
const MESSAGE_FAILURE = new Error("CHECK constraint failed: qty >= 0");
/** What an unreachable database gives. */
const OUTAGE = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), {
  code: "ECONNREFUSED",
});

interface Fixture {
  watch: OutageWatch;
  /** The waits asked for between probes, in milliseconds. */
  delays: number[];
  /** How many probes ran. */
  probes: () => number;
  /** Every log line, as `level msg`. */
  lines: string[];
  /** Every pause change the listener saw. */
  changes: boolean[];
}

/**
 * A watch over a store whose probes fail `failingProbes` times, then pass; the waits between probes
 * are recorded and end at once, so no test sleeps.
 */
function watch(failingProbes: number, options: Partial<OutageOptions> = {}): Fixture {
  const delays: number[] = [];
  const { log, lines } = recordingLogger();
  const changes: boolean[] = [];
  let probes = 0;
  const store = {
    isOutage: (error: unknown) => error === OUTAGE,
    probe() {
      probes++;
      return probes <= failingProbes ? Promise.reject(OUTAGE) : Promise.resolve();
    },
  } as unknown as Store;
  const outages = watchOutages(store, {
    log,
    delay: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    ...options,
  });
  outages.onChange((paused) => changes.push(paused));
  return { watch: outages, delays, probes: () => probes, lines, changes };
}

async function pauses(): Promise<number> {
  const line = (await renderMetrics()).split("\n").find((l) =>
    l.startsWith('campus_food_pauses_total{cause="database"}')
  );
  return line ? Number(line.split(" ")[1]) : 0;
}

Deno.test("watchOutages() report() is false for a failure while the database takes a probe", async () => {
  const { watch: outages, probes, lines, changes } = watch(0);
  assert.equal(await outages.report(MESSAGE_FAILURE), false);
  assert.equal(probes(), 1, "the database was asked");
  assert.equal(outages.reason, undefined);
  assert.deepEqual([lines, changes], [[], []]);
});

Deno.test("watchOutages() report() probes once for the failures of the same second", async () => {
  const { watch: outages, probes } = watch(0);
  assert.deepEqual(
    await Promise.all([outages.report(MESSAGE_FAILURE), outages.report(MESSAGE_FAILURE)]),
    [false, false],
  );
  assert.equal(await outages.report(MESSAGE_FAILURE), false);
  assert.equal(probes(), 1);
});

Deno.test("watchOutages() report() counts a failure of an unknown kind as an outage when the probe fails too", async () => {
  const { watch: outages, changes } = watch(1);
  assert.equal(await outages.report(new Error("something odd")), true);
  assert.deepEqual(changes, [true]);
  await outages.recovered();
  assert.deepEqual(changes, [true, false]);
});

Deno.test("watchOutages() pauses once for many failures and resumes after a probe passes", async () => {
  const { watch: outages, lines, changes, probes } = watch(2);
  const before = await pauses();
  assert.deepEqual(
    await Promise.all([outages.report(OUTAGE), outages.report(OUTAGE), outages.report(OUTAGE)]),
    [true, true, true],
  );
  assert.match(outages.reason ?? "", /ECONNREFUSED/);
  await outages.recovered();
  assert.equal(outages.reason, undefined);
  assert.equal(probes(), 3);
  assert.deepEqual(changes, [true, false]);
  assert.deepEqual(lines, [
    "warn database unavailable, pausing consumers and outbox relay",
    "info database answers again, resuming",
  ]);
  assert.equal(await pauses(), before + 1);
});

Deno.test("watchOutages() probes with exponential backoff capped at maxDelayMs", async () => {
  const { watch: outages, delays } = watch(6, { initialDelayMs: 100, maxDelayMs: 1000 });
  await outages.report(OUTAGE);
  await outages.recovered();
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
});

Deno.test("watchOutages() keeps the backoff for an outage that starts right after the last one ended", async () => {
  const { watch: outages, delays, lines } = watch(2, { initialDelayMs: 100, maxDelayMs: 60_000 });
  await outages.report(OUTAGE);
  await outages.recovered();
  await outages.report(OUTAGE);
  await outages.recovered();
  assert.deepEqual(delays, [100, 200, 400, 800]);
  assert.equal(lines.length, 4, "each pause still has its two lines");
});

Deno.test("watchOutages() retryThrough() runs fn again after an outage, and throws a message's failure", async () => {
  const { watch: outages, changes } = watch(1);
  let runs = 0;
  const result = await outages.retryThrough(() => {
    runs++;
    return runs === 1 ? Promise.reject(OUTAGE) : Promise.resolve("committed");
  });
  assert.deepEqual([result, runs, changes], ["committed", 2, [true, false]]);
  await assert.rejects(
    outages.retryThrough(() => Promise.reject(MESSAGE_FAILURE)),
    (error) => error === MESSAGE_FAILURE,
  );
});

Deno.test("watchOutages() recovered() rejects when its signal aborts during an outage", async () => {
  // A probe that never passes: the delay hangs until the watch stops.
  const { watch: outages } = watch(0, {
    delay: (_ms, signal) =>
      new Promise((resolve) => signal.addEventListener("abort", () => resolve())),
  });
  await outages.report(OUTAGE);
  const stopping = new AbortController();
  const waiting = outages.recovered(stopping.signal);
  stopping.abort(new Error("stopping"));
  await assert.rejects(waiting, /stopping/);
  assert.equal(outages.retryAfterSeconds, 1);
  await outages.stop();
});

Deno.test("watchOutages() throws a RangeError for delays that are not increasing", () => {
  assert.throws(() => watch(0, { initialDelayMs: 500, maxDelayMs: 100 }), RangeError);
  assert.throws(() => watch(0, { initialDelayMs: 0 }), RangeError);
});

Deno.test("watchOutages() counts a pause's time in paused_seconds_total", async () => {
  const { watch: outages } = watch(1);
  await outages.report(OUTAGE);
  await outages.recovered();
  const line = (await renderMetrics()).split("\n").find((l) =>
    l.startsWith('campus_food_paused_seconds_total{cause="database"}')
  );
  assert.ok(line, "a series for the database");
  assert.ok(Number(line.split(" ")[1]) >= 0, line);
});
