import assert from "node:assert/strict";
import { httpMethodLabel, metrics, renderMetrics, watchOutbox } from "./metrics.ts";

function linesOf(text: string, prefix: string): string[] {
  return text.split("\n").filter((line) => line.startsWith(prefix));
}

Deno.test("renderMetrics() writes a counter per label set with its HELP and TYPE", async () => {
  metrics.consumed.inc({ queue: "metrics-test", event_type: "OrderPlaced" });
  metrics.consumed.inc({ queue: "metrics-test", event_type: "OrderPlaced" }, 2);
  metrics.consumed.inc({ queue: "metrics-test", event_type: "Other" });
  const text = await renderMetrics();
  assert.ok(text.includes("# TYPE campus_food_messages_consumed_total counter\n"));
  assert.ok(text.includes("# HELP campus_food_messages_consumed_total Messages delivered"));
  assert.deepEqual(
    linesOf(text, 'campus_food_messages_consumed_total{queue="metrics-test"'),
    [
      'campus_food_messages_consumed_total{queue="metrics-test",event_type="OrderPlaced"} 3',
      'campus_food_messages_consumed_total{queue="metrics-test",event_type="Other"} 1',
    ],
  );
});

Deno.test("renderMetrics() escapes backslash, quote and newline in label values", async () => {
  metrics.httpRequests.inc({ method: "GET", route: 'a\\b"c\nd', status: "200" });
  const text = await renderMetrics();
  assert.deepEqual(linesOf(text, 'campus_food_http_requests_total{method="GET",route="a'), [
    'campus_food_http_requests_total{method="GET",route="a\\\\b\\"c\\nd",status="200"} 1',
  ]);
});

Deno.test("renderMetrics() writes cumulative histogram buckets, sum and count", async () => {
  const labels = { queue: "histogram-test" };
  metrics.handlerDuration.observe(labels, 0.003);
  metrics.handlerDuration.observe(labels, 0.003);
  metrics.handlerDuration.observe(labels, 5);
  const lines = linesOf(await renderMetrics(), "campus_food_handler_duration_seconds_");
  const mine = lines.filter((line) => line.includes('queue="histogram-test"'));
  const bucket = (le: string) =>
    mine.find((line) => line.includes(`le="${le}"`))?.split(" ").at(-1);
  assert.equal(bucket("0.0025"), "0");
  assert.equal(bucket("0.005"), "2");
  assert.equal(bucket("1"), "2");
  assert.equal(bucket("+Inf"), "3");
  assert.ok(
    mine.includes('campus_food_handler_duration_seconds_sum{queue="histogram-test"} 5.006'),
  );
  assert.ok(mine.includes('campus_food_handler_duration_seconds_count{queue="histogram-test"} 3'));
});

Deno.test("renderMetrics() reads the outbox and the process memory at each scrape", async () => {
  let pending = 2;
  const oldest = new Date(Date.now() - 60_000).toISOString();
  watchOutbox(() => Promise.resolve({ count: pending, oldestCreatedAt: oldest }));
  let text = await renderMetrics();
  assert.deepEqual(linesOf(text, "campus_food_outbox_pending "), ["campus_food_outbox_pending 2"]);
  const age = Number(linesOf(text, "campus_food_outbox_oldest_age_seconds ")[0].split(" ")[1]);
  assert.ok(age >= 60 && age < 120, `age ${age}`);
  assert.ok(Number(linesOf(text, "process_resident_memory_bytes ")[0].split(" ")[1]) > 0);
  pending = 0;
  text = await renderMetrics();
  assert.deepEqual(linesOf(text, "campus_food_outbox_pending "), ["campus_food_outbox_pending 0"]);
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
