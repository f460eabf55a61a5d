import assert from "node:assert/strict";
import {
  brokerMetricsHint,
  brokerMetricsProblem,
  brokerMetricsUrl,
  ENABLE_BROKER_METRICS,
} from "./broker_metrics.ts";

/** Runs `fn` with an HTTP server on a free port that answers every request with `answer`. */
async function withServer(
  answer: () => Response,
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, answer);
  try {
    await fn(`http://127.0.0.1:${server.addr.port}`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("brokerMetricsUrl() is port 15692 on the management API's host unless RABBITMQ_PROMETHEUS_URL says", () => {
  const configured = Deno.env.get("RABBITMQ_PROMETHEUS_URL");
  Deno.env.delete("RABBITMQ_PROMETHEUS_URL");
  try {
    assert.equal(
      brokerMetricsUrl("http://guest:guest@broker.example:15672"),
      "http://broker.example:15692",
    );
    Deno.env.set("RABBITMQ_PROMETHEUS_URL", "http://metrics.example:9419/");
    assert.equal(
      brokerMetricsUrl("http://guest:guest@broker.example:15672"),
      "http://metrics.example:9419",
    );
  } finally {
    if (configured === undefined) Deno.env.delete("RABBITMQ_PROMETHEUS_URL");
    else Deno.env.set("RABBITMQ_PROMETHEUS_URL", configured);
  }
});

Deno.test("brokerMetricsProblem() tells a RabbitMQ exporter from another server and from none", async () => {
  await withServer(
    () => new Response('rabbitmq_identity_info{rabbitmq_node="rabbit@host"} 1\n'),
    async (url) => assert.equal(await brokerMetricsProblem(url), undefined),
  );
  await withServer(() => new Response("up 1\n"), async (url) => {
    assert.equal(await brokerMetricsProblem(url), "it serves no RabbitMQ metrics");
  });
  await withServer(() => new Response("no", { status: 404 }), async (url) => {
    assert.equal(await brokerMetricsProblem(url), "it answers 404");
  });
  assert.equal(await brokerMetricsProblem("http://127.0.0.1:1"), "nothing answers");
});

Deno.test("brokerMetricsHint() names the endpoint, the problem and the command that enables it", () => {
  const hint = brokerMetricsHint("http://127.0.0.1:15692", "nothing answers");
  assert.match(hint, /127\.0\.0\.1:15692.*nothing answers/);
  assert.ok(hint.includes(`"${ENABLE_BROKER_METRICS}"`), hint);
});
