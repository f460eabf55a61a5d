import assert from "node:assert/strict";
import { counter, gauges, histogram, httpMethodLabel, renderMetrics } from "./metrics.ts";

function linesOf(text: string, prefix: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(prefix));
}

Deno.test("renderMetrics() writes a counter per label set with its HELP and TYPE", async () => {
  const consumed = counter("test_consumed_total", "Messages delivered in this test", [
    "queue",
    "event_type",
  ]);
  consumed.inc({ queue: "metrics-test", event_type: "OrderPlaced" });
  consumed.inc({ queue: "metrics-test", event_type: "OrderPlaced" }, 2);
  consumed.inc({ queue: "metrics-test", event_type: "Other" });
  const text = await renderMetrics();
  assert.ok(text.includes("# TYPE campus_food_test_consumed_total counter\n"));
  assert.ok(
    text.includes("# HELP campus_food_test_consumed_total Messages delivered in this test"),
  );
  assert.deepEqual(linesOf(text, "campus_food_test_consumed_total{"), [
    'campus_food_test_consumed_total{queue="metrics-test",event_type="OrderPlaced"} 3',
    'campus_food_test_consumed_total{queue="metrics-test",event_type="Other"} 1',
  ]);
});

Deno.test("renderMetrics() escapes backslash, quote and newline in label values", async () => {
  counter("test_escaping_total", "Label values to escape", ["method", "route", "status"])
    .inc({ method: "GET", route: 'a\\b"c\nd', status: "200" });
  const text = await renderMetrics();
  assert.deepEqual(linesOf(text, "campus_food_test_escaping_total{"), [
    'campus_food_test_escaping_total{method="GET",route="a\\\\b\\"c\\nd",status="200"} 1',
  ]);
});

Deno.test("renderMetrics() writes cumulative histogram buckets, sum and count", async () => {
  const duration = histogram("test_duration_seconds", "Durations in this test", ["queue"]);
  const labels = { queue: "histogram-test" };
  duration.observe(labels, 0.003);
  duration.observe(labels, 0.003);
  duration.observe(labels, 5);
  const lines = linesOf(await renderMetrics(), "campus_food_test_duration_seconds_");
  const bucket = (le: string) =>
    lines.find((line) => line.includes(`le="${le}"`))?.split(" ").at(-1);
  assert.equal(bucket("0.0025"), "0");
  assert.equal(bucket("0.005"), "2");
  assert.equal(bucket("1"), "2");
  assert.equal(bucket("+Inf"), "3");
  assert.ok(lines.includes('campus_food_test_duration_seconds_sum{queue="histogram-test"} 5.006'));
  assert.ok(lines.includes('campus_food_test_duration_seconds_count{queue="histogram-test"} 3'));
});

Deno.test("renderMetrics() reads gauges at each scrape, and says why when they cannot be read", async () => {
  let pending: number | Error = 2;
  gauges(["campus_food_test_pending"], () => {
    if (pending instanceof Error) throw pending;
    return [{ name: "campus_food_test_pending", help: "Rows waiting", value: pending }];
  });
  let text = await renderMetrics();
  assert.deepEqual(linesOf(text, "campus_food_test_pending"), ["campus_food_test_pending 2"]);
  assert.ok(text.includes("# TYPE campus_food_test_pending gauge\n"));
  assert.ok(Number(linesOf(text, "process_resident_memory_bytes ")[0].split(" ")[1]) > 0);
  pending = new Error("database is out");
  text = await renderMetrics();
  assert.deepEqual(linesOf(text, "campus_food_test_pending"), []);
  assert.match(text, /^# campus_food_test_pending unavailable: .*database is out/m);
  assert.ok(linesOf(text, "process_resident_memory_bytes ").length === 1);
});

Deno.test("httpMethodLabel() keeps the standard methods and calls every other one other", () => {
  for (const method of ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE"]) {
    assert.equal(httpMethodLabel(method), method);
  }
  assert.equal(httpMethodLabel("PATCH"), "PATCH");
  for (const method of ["get", "PROPFIND", "X".repeat(400), "", "GET "]) {
    assert.equal(httpMethodLabel(method), "other");
  }
});
