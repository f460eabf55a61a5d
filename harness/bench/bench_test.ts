/**
 * `deno task bench` with tiny numbers, against the broker: every figure is there and positive.
 * It checks that the benchmark works, not that this machine meets the targets.
 */
import assert from "node:assert/strict";
import { parseBenchArgs, runBench, SECTIONS } from "./bench.ts";
import {
  type BenchReport,
  checkTargets,
  formatMarkdownReport,
  formatReport,
  type ScaleRow,
} from "./_report.ts";
import { INTEGRATION } from "../lib/stack.ts";

Deno.test(
  "runBench() measures every figure with tiny numbers, against the broker",
  INTEGRATION,
  async () => {
    const report = await runBench({
      backlog: 200,
      orders: 100,
      concurrency: 10,
      rate: 50,
      seconds: 1,
      idleSeconds: 2,
      only: SECTIONS,
      rates: [50],
      stepSeconds: 1,
    });
    const text = formatReport(report);
    assert.ok(report.ceiling && report.ceiling.msgPerSec > 0, text);
    const pipeline = report.endToEndCeiling!;
    assert.ok(pipeline.orders === 100 && pipeline.ordersPerSec > 0, text);
    assert.ok(pipeline.cpuMsPerOrder.harness >= 0 && "broker" in pipeline.cpuMsPerOrder, text);
    assert.equal(report.scale.length, 1);
    const [row] = report.scale;
    assert.ok(row.drain && row.drain.msgPerSec > 0 && row.drain.msgPerSecWithStartup > 0, text);
    assert.ok(row.drainRatio !== undefined && row.drainRatio > 0, text);
    assert.ok(row.endToEnd && row.endToEnd.ordersPerSec > 0 && row.endToEnd.http.p99 > 0, text);
    assert.ok((row.endToEnd.cpuCores.order ?? 0) > 0, text);
    assert.ok(row.endToEndRatio !== undefined && row.endToEndRatio > 0, text);
    for (const service of ["order", "inventory", "notification", "broker"]) {
      assert.ok(service in row.endToEnd.cpuMsPerOrder, `CPU per order of ${service}: ${text}`);
      assert.ok(service in report.latency!.cpuMsPerOrder, `CPU per order of ${service}: ${text}`);
    }
    assert.ok("inventory" in row.drain.cpuMsPerMessage, text);
    assert.match(text, /end to end: .* orders\/s = [\d.]+× e2e ceiling/);
    assert.match(
      text,
      /end to end against the bare pipeline +[\d.]+× e2e ceiling +≥ 0.6× e2e ceiling/,
    );
    assert.match(text, /CPU per order \(ms\) +harness [\d.]+ · order [\d.]+ · inventory/);
    const latency = report.latency!;
    assert.equal(latency.orders, 50);
    for (const p of [latency.http, latency.confirmed, latency.notified]) {
      assert.ok(p.count === 50 && p.p50 >= 0 && p.p99 >= p.p50, text);
    }
    for (const service of ["order", "inventory", "notification"] as const) {
      assert.ok((report.peakRssMb[service] ?? 0) > 0, `peak RSS of ${service}: ${text}`);
      assert.ok((report.peakPrivateMb[service] ?? 0) > 0, `private memory of ${service}: ${text}`);
    }
    const hop = report.webhookHop!;
    assert.ok(hop.endToEnd.ordersPerSec > 0 && hop.endToEnd.orders === 100, text);
    assert.equal(hop.latency.delivered?.count, 50, text);
    // Of the same orders, the delivery comes after the record.
    assert.ok(hop.latency.delivered!.p50 >= hop.latency.notified.p50, text);
    assert.match(text, /POST → delivered to the webhook +p50 /);
    const curve = report.curve!;
    assert.ok(curve.steps.length === 1 && curve.steps[0].offeredPerSec === 50, text);
    for (const step of curve.steps) {
      assert.ok(step.decision.count > 0 && step.delivered!.count === step.decision.count, text);
      assert.ok("order" in step.cpuMsPerOrder, text);
    }
    assert.match(text, /latency curve: each rate for 1 s/);
    assert.ok(report.idle && report.idle.bareMb > 0, text);
    for (const service of ["order", "inventory", "notification"] as const) {
      assert.ok(report.idle.servicesMb[service]! > report.idle.bareMb, `idle ${service}: ${text}`);
    }
    assert.equal(report.targets.length, 11, text);
    assert.ok(report.machine.cpus > 0 && report.machine.rabbitmq !== "", text);
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(report)));
    const markdown = formatMarkdownReport(report, new Date(), { curveChart: "curve.svg" });
    assert.match(markdown, /^## Figures of \d{4}-\d\d-\d\d\n/);
    assert.match(markdown, /\n\| offered\/s +\| sent\/s /);
    assert.match(markdown, /!\[The latency curve\]\(curve\.svg\)/);
  },
);

Deno.test("parseBenchArgs() reads lists and --quick, and names a bad option", () => {
  const options = parseBenchArgs(["--store", "postgres", "--instances", "1,2,3", "--quick"]);
  assert.equal(options.store, "postgres");
  assert.deepEqual(options.instances, [1, 2, 3]);
  assert.equal(options.backlog, 2000);
  assert.equal(options.idleSeconds, 5);
  assert.equal(parseBenchArgs(["--idle-seconds", "30"]).idleSeconds, 30);
  assert.equal(options.cluster, false);
  assert.equal(parseBenchArgs(["--cluster"]).cluster, true);
  assert.equal(parseBenchArgs(["--only", "ceiling,e2e"]).only?.join(), "ceiling,e2e");
  assert.equal(parseBenchArgs(["--retention", "5s"]).retention, "5s");
  assert.equal(parseBenchArgs(["--report", "figures.md"]).report, "figures.md");
  assert.equal(options.report, undefined);
  assert.throws(() => parseBenchArgs(["--report="]), /--report must name a file/);
  assert.throws(() => parseBenchArgs(["--store", "mysql"]), /--store must be one of/);
  assert.throws(() => parseBenchArgs(["--instances", "0"]), /--instances must be integers/);
  assert.throws(() => parseBenchArgs(["--only", "drain,speed"]), /--only must list/);
  assert.throws(() => parseBenchArgs(["--orders=0"]), /--orders must be a positive/);
  assert.equal(options.only, undefined);
  assert.equal(parseBenchArgs(["--curve"]).only?.join(), `${SECTIONS.join()}`);
  assert.equal(parseBenchArgs(["--curve", "--only", "e2e"]).only?.join(), "e2e,curve");
  const curve = parseBenchArgs(["--only", "curve", "--rates", "100,250", "--step-seconds", "3"]);
  assert.deepEqual([curve.rates, curve.stepSeconds], [[100, 250], 3]);
  assert.throws(() => parseBenchArgs(["--rates", "100,fast"]), /--rates must be positive numbers/);
});

Deno.test("runBench() refuses several inventories on SQLite, or a bad retention, before starting anything", async () => {
  await assert.rejects(
    runBench({ store: "sqlite", instances: [2] }),
    /several inventory instances need --store postgres/,
  );
  await assert.rejects(runBench({ retention: "soon" }), /retention must be a duration/);
});

Deno.test("checkTargets() judges drain and end to end against the ceilings, PostgreSQL against SQLite, and the decision's p99", () => {
  const endToEnd = (
    ordersPerSec: number,
  ) => ({ ordersPerSec } as NonNullable<ScaleRow["endToEnd"]>);
  const percentilesOf = (p99: number) => ({ p50: 1, p95: 1, p99 });
  const latency = {
    rate: 200,
    confirmed: percentilesOf(24),
    notified: percentilesOf(51),
  } as NonNullable<BenchReport["latency"]>;
  const scale: ScaleRow[] = [
    {
      store: "sqlite",
      instances: 1,
      drainRatio: 0.86,
      endToEnd: endToEnd(1500),
      endToEndRatio: 0.3,
    },
    { store: "postgres", instances: 1, drainRatio: 0.5, endToEnd: endToEnd(1000) },
  ];
  const judged = (store: "sqlite" | "postgres") =>
    Object.fromEntries(
      checkTargets({ primary: { store, instances: 1 }, scale, latency, peakPrivateMb: {} })
        .map(({ name, measured, met }) => [name, `${measured}: ${met ? "met" : "not met"}`]),
    );
  assert.deepEqual(judged("sqlite"), {
    "backlog drain": "0.86× ceiling: met",
    "end to end": "1,500 orders/s: met",
    "end to end against the bare pipeline": "0.3× e2e ceiling: not met",
    "p99 POST → decision at 200/s": "24 ms: met",
    "p99 POST → notification at 200/s": "51 ms: not met",
  });
  assert.deepEqual(judged("postgres"), {
    "backlog drain": "0.5× ceiling: met",
    "end to end": "1,000 orders/s: met",
    "end to end against SQLite's": "0.67× SQLite's: not met",
    "p99 POST → decision at 200/s": "24 ms: met",
    "p99 POST → notification at 200/s": "51 ms: not met",
  });
});

Deno.test("formatMarkdownReport() writes a dated section with the machine, the command and a padded table", () => {
  const measured = {
    primary: { store: "sqlite" as const, instances: 1 },
    scale: [],
    peakPrivateMb: { order: 50, inventory: 61.5 },
  };
  const report: BenchReport = {
    command: "deno task bench --only idle",
    machine: {
      cpus: 2,
      cpuModel: "AMD EPYC",
      memoryGib: 23.5,
      os: "Linux 6.18",
      deno: "2.9.6",
      rabbitmq: "3.10.8",
    },
    loadAverageBefore: 0.13,
    settings: {},
    ...measured,
    peakRssMb: { order: 97.8, inventory: 103.2 },
    targets: checkTargets(measured),
    durationSeconds: 75,
  };
  const markdown = formatMarkdownReport(report, new Date("2026-11-27T12:00:00Z"));
  const lines = markdown.split("\n");
  assert.equal(lines[0], "## Figures of 2026-11-27");
  assert.match(markdown, /Measured on 2026-11-27 with `deno task bench --only idle` \(75 s\)/);
  assert.match(markdown, /2 × AMD EPYC, 23\.5 GiB, Linux 6\.18; Deno 2\.9\.6, RabbitMQ 3\.10\.8/);
  const rows = lines.filter((line) => line.startsWith("|"));
  assert.equal(rows.length, 4, markdown);
  assert.match(rows[1], /^\| -{3,} \| -{3,} \|/);
  assert.ok(rows.every((row) => [...row].length === [...rows[0]].length), markdown);
  assert.match(
    rows[3],
    /^\| peak RSS inventory \(private part\) +\| 103\.2 MB \(61\.5 MB\) +\| private ≤ 60 MB +\| NOT MET \|$/,
  );
  assert.match(markdown, /1 of 2 targets not met: peak private memory inventory 61\.5 MB/);
});
