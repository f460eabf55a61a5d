/**
 * `deno task bench` with tiny numbers, against the broker: every figure is there and positive.
 * It checks that the benchmark works, not that this machine meets the targets.
 */
import assert from "node:assert/strict";
import { parseBenchArgs, runBench } from "./bench.ts";
import { formatReport } from "./_report.ts";
import { percentiles } from "./_stats.ts";
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
    });
    const text = formatReport(report);
    assert.ok(report.ceiling && report.ceiling.msgPerSec > 0, text);
    assert.equal(report.scale.length, 1);
    const [row] = report.scale;
    assert.ok(row.drain && row.drain.msgPerSec > 0 && row.drain.msgPerSecWithStartup > 0, text);
    assert.ok(row.drainRatio !== undefined && row.drainRatio > 0, text);
    assert.ok(row.endToEnd && row.endToEnd.ordersPerSec > 0 && row.endToEnd.http.p99 > 0, text);
    assert.ok((row.endToEnd.cpuCores.order ?? 0) > 0, text);
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
    assert.ok(report.idle && report.idle.bareMb > 0, text);
    for (const service of ["order", "inventory", "notification"] as const) {
      assert.ok(report.idle.servicesMb[service]! > report.idle.bareMb, `idle ${service}: ${text}`);
    }
    assert.equal(report.targets.length, 9, text);
    assert.ok(report.machine.cpus > 0 && report.machine.rabbitmq !== "", text);
    assert.doesNotThrow(() => JSON.parse(JSON.stringify(report)));
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
  assert.throws(() => parseBenchArgs(["--store", "mysql"]), /--store must be one of/);
  assert.throws(() => parseBenchArgs(["--instances", "0"]), /--instances must be integers/);
  assert.throws(() => parseBenchArgs(["--only", "drain,speed"]), /--only must list/);
  assert.throws(() => parseBenchArgs(["--orders=0"]), /--orders must be a positive/);
});

Deno.test("runBench() refuses several inventories on SQLite, or a bad retention, before starting anything", async () => {
  await assert.rejects(
    runBench({ store: "sqlite", instances: [2] }),
    /several inventory instances need --store postgres/,
  );
  await assert.rejects(runBench({ retention: "soon" }), /retention must be a duration/);
});

Deno.test("percentiles() takes the nearest rank", () => {
  const samples = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual(percentiles(samples), { p50: 50, p95: 95, p99: 99, max: 100, count: 100 });
  assert.throws(() => percentiles([]), RangeError);
});
