/**
 * What a user of compose.yaml's observability profile sees, checked against the real stack.
 *
 * Traces: with `OTEL_DENO=true` one order is one trace across the three services. The services run
 * with their OTLP exporter pointed at a receiver of this test's own, and the trace it receives must
 * have the request, each publish and each consumer's handling in one parent chain, with the
 * messaging conventions' attributes; also when the broker was out while the order came in. A
 * retry, a poison message's dead-lettering and its replay are recorded too.
 *
 * Metrics: every metric and label that the Grafana dashboard's queries use is in the services'
 * `/metrics`, or in RabbitMQ's exporter for the queue depths.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { waitForDepth } from "../lib/broker_probes.ts";
import { postOrder, readMetric, request, statusOf } from "../lib/http_probes.ts";
import {
  type OtlpReceiver,
  type ReceivedSpan,
  renderTraceTree,
  startOtlpReceiver,
} from "../lib/otlp_receiver.ts";
import { serviceEnvFile, type ServiceName, SERVICES } from "../lib/service_process.ts";
import { INTEGRATION, type Stack, withStack } from "../lib/stack.ts";
import { startTcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import { deadLetterQueue, EventType, EXCHANGE, Queue } from "../../shared/topology.ts";
import { traceIdOf } from "../../shared/traceparent.ts";
import { newId } from "../../shared/ids.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** What makes a program export its spans to `receiver`, soon after each ends. */
function exportTo(receiver: OtlpReceiver): Record<string, string> {
  return {
    OTEL_DENO: "true",
    OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    // Export every 100 ms rather than every 5 s, so the test waits less.
    OTEL_BSP_SCHEDULE_DELAY: "100",
  };
}

/** Places an order and returns the id of the trace its response names. */
async function placeTracedOrder(stack: Stack): Promise<string> {
  const response = await postOrder(stack.url("order"), {
    user_id: "u1",
    items: [{ sku: "burger", qty: 1 }],
  });
  assert.equal(response.status, 202, await response.text());
  const traceId = traceIdOf(response.headers.get("traceparent"));
  assert.ok(traceId, "the response names the order's trace");
  return traceId;
}

/** The one span of `spans` that `matches`, or undefined; throws if there are several. */
function only(
  spans: readonly ReceivedSpan[],
  matches: (span: ReceivedSpan) => boolean,
): ReceivedSpan | undefined {
  const found = spans.filter(matches);
  assert.ok(found.length <= 1, `one span expected, found ${found.map((s) => s.name).join(", ")}`);
  return found[0];
}

/** The spans of one order's trace, named by their place in it. */
interface OrderTrace {
  request: ReceivedSpan;
  placeOrder: ReceivedSpan;
  publishPlaced: ReceivedSpan;
  processPlaced: ReceivedSpan;
  commitPlaced: ReceivedSpan;
  publishOutcome: ReceivedSpan;
  updateStatus: ReceivedSpan;
  publishDecision: ReceivedSpan;
  notify: ReceivedSpan;
}

/**
 * Waits for the whole trace `traceId` of one order, following the parent chain from the request:
 * each span is looked for among the children of the one before.
 */
function waitForOrderTrace(receiver: OtlpReceiver, traceId: string): Promise<OrderTrace> {
  return waitFor(`every span of trace ${traceId}`, () => {
    const spans = receiver.trace(traceId);
    const child = (parent: ReceivedSpan | undefined, name: string, service: string) =>
      parent &&
      only(spans, (span) =>
        span.parentSpanId === parent.spanId && span.name === name && span.service === service &&
        span.status.code !== "error");
    const server = only(spans, (span) => span.kind === "server" && span.parentSpanId === "");
    const publishPlaced = child(server, `publish ${EXCHANGE}:OrderPlaced`, "order");
    const processPlaced = child(publishPlaced, `process ${Queue.orderPlaced}`, "inventory");
    const publishOutcome = child(
      processPlaced,
      `publish ${EXCHANGE}:${EventType.InventoryReserved}`,
      "inventory",
    );
    const updateStatus = child(publishOutcome, `process ${Queue.inventoryReserved}`, "order");
    const publishDecision = child(
      updateStatus,
      `publish ${EXCHANGE}:${EventType.OrderConfirmed}`,
      "order",
    );
    const found = {
      request: server,
      placeOrder: child(server, "place order", "order"),
      publishPlaced,
      processPlaced,
      commitPlaced: child(processPlaced, `commit ${Queue.orderPlaced}`, "inventory"),
      publishOutcome,
      updateStatus,
      publishDecision,
      notify: child(publishDecision, `process ${Queue.orderConfirmed}`, "notification"),
    };
    const missing = Object.keys(found).filter((place) => !found[place as keyof OrderTrace]);
    if (missing.length === 0) return found as OrderTrace;
    // waitFor() shows the last error when it gives up: what was missing, and what had come.
    throw new Error(
      `missing ${missing.join(", ")} among ${
        spans.map((s) => `${s.service}:${s.name}`).join(", ")
      }`,
    );
  }, { timeoutMs: 30_000 });
}

function assertMessaging(span: ReceivedSpan, expected: Record<string, unknown>): void {
  for (const [key, value] of Object.entries({ "messaging.system": "rabbitmq", ...expected })) {
    assert.equal(span.attributes[key], value, `${span.name} [${span.service}]: ${key}`);
  }
}

function assertOrderTrace(trace: OrderTrace): void {
  const { request, publishPlaced, processPlaced, commitPlaced, publishOutcome } = trace;
  assert.equal(request.name, "POST /order");
  assert.equal(request.service, "order");
  assert.deepEqual(
    Object.entries(trace).map(([place, span]) => [place, span.kind]),
    [
      ["request", "server"],
      ["placeOrder", "internal"],
      ["publishPlaced", "producer"],
      ["processPlaced", "consumer"],
      ["commitPlaced", "internal"],
      ["publishOutcome", "producer"],
      ["updateStatus", "consumer"],
      ["publishDecision", "producer"],
      ["notify", "consumer"],
    ],
  );
  const orderId = publishPlaced.attributes["messaging.message.conversation_id"];
  assert.ok(typeof orderId === "string" && orderId.length > 0, "the order id as conversation id");
  const eventId = publishPlaced.attributes["messaging.message.id"];
  assertMessaging(publishPlaced, {
    "messaging.operation.type": "send",
    "messaging.destination.name": `${EXCHANGE}:OrderPlaced`,
    "messaging.rabbitmq.destination.routing_key": "OrderPlaced",
  });
  assertMessaging(processPlaced, {
    "messaging.operation.type": "process",
    "messaging.destination.name": `${EXCHANGE}:OrderPlaced:${Queue.orderPlaced}`,
    "messaging.rabbitmq.destination.routing_key": "OrderPlaced",
    "messaging.message.id": eventId,
    "messaging.message.conversation_id": orderId,
  });
  assertMessaging(commitPlaced, {
    "messaging.operation.type": "process",
    "messaging.batch.message_count": 1,
  });
  assertMessaging(publishOutcome, {
    "messaging.operation.type": "send",
    "messaging.rabbitmq.destination.routing_key": EventType.InventoryReserved,
    "messaging.message.conversation_id": orderId,
  });
  assertMessaging(trace.updateStatus, {
    "messaging.operation.type": "process",
    "messaging.message.id": publishOutcome.attributes["messaging.message.id"],
  });
  assertMessaging(trace.publishDecision, {
    "messaging.operation.type": "send",
    "messaging.rabbitmq.destination.routing_key": EventType.OrderConfirmed,
    "messaging.message.conversation_id": orderId,
  });
  assertMessaging(trace.notify, {
    "messaging.operation.type": "process",
    "messaging.message.id": trace.publishDecision.attributes["messaging.message.id"],
  });
}

async function metricsText(stack: Stack, service: ServiceName): Promise<string> {
  return await (await request(`${stack.url(service)}/metrics`)).text();
}

/** Runs `deno task dlq:replay` for `queue`, exporting its spans to `receiver`. */
async function replayDeadLetters(
  stack: Stack,
  receiver: OtlpReceiver,
  queue: Queue,
): Promise<void> {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--env-file=${join(ROOT, serviceEnvFile("dlq"))}`,
      join(ROOT, "harness", "ops", "dlq.ts"),
      "replay",
      "--queue",
      queue,
    ],
    env: { AMQP_URL: stack.amqpUrl, ...exportTo(receiver) },
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}

/** The metric names and the label names (in matchers and groupings) of a PromQL expression. */
export function promQlNames(expr: string): { metrics: string[]; labels: string[] } {
  const labels: string[] = [];
  const rest = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{([^}]*)\}/g, (_, matchers: string) => {
      for (const [, label] of matchers.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)) labels.push(label);
      return " ";
    })
    .replace(
      /\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g,
      (_, grouping: string) => {
        labels.push(...grouping.split(",").map((label) => label.trim()).filter(Boolean));
        return " ";
      },
    )
    .replace(/\[[^\]]*\]/g, " ");
  const metrics = [...rest.matchAll(/[a-zA-Z_:][\w:]*(?![\w:]|\s*\()/g)]
    .map(([name]) => name)
    .filter((name) => !PROMQL_KEYWORDS.has(name));
  return { metrics, labels };
}

const PROMQL_KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "offset",
  "inf",
  "nan",
]);

/** A metric of a Prometheus text exposition: whether it has series yet, and their labels. */
interface ExposedMetric {
  series: boolean;
  labels: Set<string>;
}

/** The metrics of a Prometheus text exposition, by name. */
function exposedMetrics(text: string): Map<string, ExposedMetric> {
  const metrics = new Map<string, ExposedMetric>();
  const metric = (name: string) =>
    metrics.get(name) ?? metrics.set(name, { series: false, labels: new Set() }).get(name)!;
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    for (const suffix of type === "histogram" ? ["_bucket", "_sum", "_count"] : [""]) {
      metric(name + suffix);
    }
  }
  for (const [, name, labels = ""] of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? /gm)) {
    const found = metric(name);
    found.series = true;
    for (const [, label] of labels.matchAll(/(\w+)="/g)) found.labels.add(label);
  }
  return metrics;
}

/** Where RabbitMQ's Prometheus exporter answers, if it is on. */
const RABBITMQ_PROMETHEUS_URL = Deno.env.get("RABBITMQ_PROMETHEUS_URL") || "http://127.0.0.1:15692";

/** The labels Prometheus adds to every series it scrapes from the services. */
async function scrapeTargetLabels(): Promise<string[]> {
  const config = await Deno.readTextFile(join(ROOT, "observability", "prometheus.yml"));
  const added = [...config.matchAll(/labels: \{ (\w+):/g)].map(([, label]) => label);
  assert.ok(added.includes("service"), "prometheus.yml labels each service's series");
  return ["job", "instance", ...new Set(added)];
}

/** Every query of the Grafana dashboard. */
async function dashboardQueries(): Promise<string[]> {
  const dashboard = JSON.parse(
    await Deno.readTextFile(join(ROOT, "observability", "grafana", "campus-food.json")),
  ) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  return dashboard.panels.flatMap((panel) => panel.targets ?? []).map((target) => target.expr);
}

/**
 * Checks that every metric of the dashboard's queries with a name `served` accepts is in
 * `exposed` and, once it has series, that every label the query uses is on one of them;
 * `targetLabels` come from the scrape.
 */
async function assertDashboardMetrics(
  exposed: Map<string, ExposedMetric>,
  options: { served: (metric: string) => boolean; targetLabels: readonly string[] },
): Promise<number> {
  let checked = 0;
  for (const expr of await dashboardQueries()) {
    const { metrics, labels } = promQlNames(expr);
    const ours = metrics.filter(options.served);
    if (ours.length === 0) continue;
    for (const metric of ours) assert.ok(exposed.has(metric), `${metric} (in ${expr}) is served`);
    // A counter never incremented has no series yet, and so shows none of its labels.
    const withSeries = ours.filter((metric) => exposed.get(metric)!.series);
    for (const label of withSeries.length > 0 ? labels : []) {
      if (label === "le" || options.targetLabels.includes(label)) continue;
      assert.ok(
        withSeries.some((metric) => exposed.get(metric)!.labels.has(label)),
        `label ${label} (in ${expr}) is on a series of ${withSeries.join(" or ")}`,
      );
    }
    checked += ours.length;
  }
  return checked;
}

Deno.test("promQlNames() finds metrics and labels but not functions, strings or ranges", () => {
  assert.deepEqual(
    promQlNames(
      'histogram_quantile(0.99, sum by (le, queue) (rate(a_bucket{queue!~"x.+"}[$__rate_interval]))) / on (queue) b',
    ),
    { metrics: ["a_bucket", "b"], labels: ["queue", "le", "queue", "queue"] },
  );
});

Deno.test(
  "one order is one trace across the three services, also after a broker outage; retries, dead-lettering and replays are recorded, against the broker",
  INTEGRATION,
  async (t) => {
    const receiver = startOtlpReceiver();
    /** What services that the test restarts served at `/metrics` before. */
    const scraped: string[] = [];
    // Per-queue depths and consumers, and the node's own figures (its alarms), as Prometheus
    // scrapes them (observability/prometheus.yml).
    const rabbitmqMetrics = await Promise.all(
      ["/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count", "/metrics"].map(
        (path) =>
          fetch(`${RABBITMQ_PROMETHEUS_URL}${path}`, { signal: AbortSignal.timeout(2000) })
            .then((response) => response.ok ? response.text() : undefined, () => undefined),
      ),
    ).then((texts) => texts.includes(undefined) ? undefined : texts.join("\n"));
    const proxy = startTcpProxy(brokerTarget());
    try {
      await withStack({
        env: exportTo(receiver),
        servicesAmqpUrl: (url) => viaProxy(url, proxy),
      }, async (stack) => {
        await t.step(
          "an order's trace: request → publish → process → publish → process",
          async () => {
            const traceId = await placeTracedOrder(stack);
            const trace = await waitForOrderTrace(receiver, traceId);
            assertOrderTrace(trace);
            assert.equal(trace.publishPlaced.parentSpanId, trace.request.spanId);
            console.log(renderTraceTree(receiver.trace(traceId)));
          },
        );

        await t.step("an order placed while the broker is out keeps its trace", async () => {
          proxy.cut();
          await waitFor(
            "the order service to see the broker gone",
            async () => await statusOf(`${stack.url("order")}/ready`) === 503,
          );
          const traceId = await placeTracedOrder(stack);
          await waitFor(
            "the order to wait in the outbox",
            async () => await readMetric(stack.url("order"), "campus_food_outbox_pending") === 1,
          );
          const restoredAt = Date.now();
          proxy.restore();
          const trace = await waitForOrderTrace(receiver, traceId);
          assertOrderTrace(trace);
          // Published after the outage, under the request that ended before it.
          assert.ok(trace.request.endMs <= restoredAt);
          assert.ok(trace.publishPlaced.startMs >= restoredAt - 1);
        });

        await t.step(
          "a transient failure's retry is a span event, and the retry a sibling span",
          async () => {
            await stack.stop("notification");
            await stack.start("notification", { FAULT_TRANSIENT_RATE: "1" });
            const traceId = await placeTracedOrder(stack);
            const notify = `process ${Queue.orderConfirmed}`;
            const failed = await waitFor(
              "the failed handling's span",
              () => only(receiver.trace(traceId), (span) => span.name === notify),
            );
            assert.equal(failed.status.code, "error");
            assert.match(failed.status.message, /Injected transient fault/);
            const retry = failed.events.find((event) => event.name === "retry scheduled");
            assert.equal(retry?.attributes["campus_food.attempt"], 1);
            assert.equal(retry?.attributes["campus_food.delay_ms"], 1000);
            // Its retry counter is kept for the dashboard's check: the restart starts it afresh.
            scraped.push(await metricsText(stack, "notification"));
            await stack.stop("notification");
            await stack.start("notification");
            const trace = await waitForOrderTrace(receiver, traceId);
            assert.equal(trace.notify.parentSpanId, failed.parentSpanId);
            assert.notEqual(trace.notify.spanId, failed.spanId);
          },
        );

        await t.step(
          "a poison message's dead-lettering is a span event, and its replay links to its trace",
          async () => {
            const traceId = crypto.randomUUID().replaceAll("-", "");
            const producerSpanId = "00f067aa0ba902b7";
            const messageId = newId();
            await stack.broker.publish([{
              exchange: EXCHANGE,
              routingKey: EventType.OrderPlaced,
              body: JSON.stringify({ event_id: messageId, event_type: "OrderPlaced" }),
              messageId,
              type: EventType.OrderPlaced,
              headers: { traceparent: `00-${traceId}-${producerSpanId}-01` },
            }]);
            const poisoned = await waitFor(
              "the poison's span",
              () =>
                only(
                  receiver.trace(traceId),
                  (span) => span.name === `process ${Queue.orderPlaced}`,
                ),
            );
            assert.equal(poisoned.service, "inventory");
            assert.equal(poisoned.parentSpanId, producerSpanId);
            assert.equal(poisoned.status.code, "error");
            const exception = poisoned.events.find((event) => event.name === "exception");
            assert.equal(exception?.attributes["exception.type"], "PoisonMessageError");
            const deadLettered = poisoned.events.find((event) => event.name === "dead-lettered");
            assert.match(String(deadLettered?.attributes["campus_food.reason"]), /order/);

            await waitForDepth(stack, deadLetterQueue(Queue.orderPlaced), 1);
            await replayDeadLetters(stack, receiver, Queue.orderPlaced);
            const replay = await waitFor(
              "the replay's span",
              () =>
                only(receiver.spans, (span) => span.links.some((link) => link.traceId === traceId)),
            );
            assert.equal(replay.service, "dlq");
            assert.equal(replay.kind, "producer");
            assert.equal(replay.parentSpanId, "");
            assert.equal(
              replay.attributes["campus_food.replayed_from"],
              deadLetterQueue(Queue.orderPlaced),
            );
            assert.deepEqual(replay.links, [{ traceId, spanId: producerSpanId }]);
            // The replayed message is handled in the replay's trace, and parked again.
            const again = await waitFor(
              "the replayed message's span",
              () =>
                only(receiver.trace(replay.traceId), (span) => span.parentSpanId === replay.spanId),
            );
            assert.equal(again.name, `process ${Queue.orderPlaced}`);
            assert.ok(again.events.some((event) => event.name === "dead-lettered"));
            console.log(
              renderTraceTree([...receiver.trace(traceId), ...receiver.trace(replay.traceId)]),
            );
          },
        );

        await t.step(
          "every metric and label the dashboard queries is in the services' /metrics",
          async () => {
            const texts = await Promise.all(SERVICES.map((name) => metricsText(stack, name)));
            const exposed = exposedMetrics([...scraped, ...texts].join("\n"));
            const checked = await assertDashboardMetrics(exposed, {
              served: (metric) => !metric.startsWith("rabbitmq_"),
              targetLabels: await scrapeTargetLabels(),
            });
            assert.ok(checked >= 15, `${checked} metrics checked`);
          },
        );

        await t.step({
          name: "the dashboard's queue depths are in RabbitMQ's exporter",
          // The rabbitmq_prometheus plugin is on in compose's broker, not necessarily on this one.
          ignore: rabbitmqMetrics === undefined,
          fn: async () => {
            const checked = await assertDashboardMetrics(exposedMetrics(rabbitmqMetrics!), {
              served: (metric) => metric.startsWith("rabbitmq_"),
              targetLabels: [],
            });
            assert.ok(checked >= 3, `${checked} metrics checked`);
          },
        });
      });
    } finally {
      proxy.close();
      await receiver.close();
    }
  },
);
