/**
 * What an operator's Prometheus sees, proven with a real one: Debian's `prometheus` runs with the
 * project's scrape configuration and alert rules (observability/), its targets moved to a test
 * stack's ports and the broker's exporter scoped to the stack's vhost, and every `for:` cut to a
 * second. Healthy, every target is up, every Grafana dashboard query returns data and every alert
 * rule evaluates and stays quiet; then a poison message fires DeadLettersWaiting, and stopping
 * inventory fires ServiceDown and QueueWithoutConsumers.
 *
 * Skipped with one line where Prometheus is not installed or the broker's rabbitmq_prometheus plugin
 * does not answer; it runs in the plain pass only, as its faults are no broker user's business.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitFor } from "../lib/async.ts";
import { ALERTS_FILE, parseAlertRules, withForDurations } from "../lib/alert_rules.ts";
import {
  brokerMetricsHint,
  brokerMetricsProblem,
  brokerMetricsUrl,
} from "../lib/broker_metrics.ts";
import { publishOrderPlaced } from "../lib/broker_probes.ts";
import { freePorts } from "../lib/free_ports.ts";
import { placeOrder, waitDecided } from "../lib/http_probes.ts";
import {
  findProgram,
  PROMETHEUS_HINT,
  type PrometheusServer,
  startPrometheus,
} from "../lib/prometheus_server.ts";
import { HARNESS_SECURE } from "../lib/secure_mode.ts";
import { type ServiceName, SERVICES } from "../lib/service_process.ts";
import { INTEGRATION, type Stack, withStack } from "../lib/stack.ts";
import { orderPlaced } from "../../shared/events.ts";
import { newId } from "../../shared/ids.ts";
import { deadLetterQueue, Queue } from "../../shared/topology.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const BROKER_METRICS_URL = brokerMetricsUrl();

/** Why this pass does not run the test, said in one line, or undefined when it does. */
async function skipReason(): Promise<string | undefined> {
  if (HARNESS_SECURE) return "runs in the plain pass only, skipped with HARNESS_SECURE=1";
  if (!findProgram("prometheus")) {
    return `Prometheus is not installed (${PROMETHEUS_HINT}); skipped`;
  }
  const problem = await brokerMetricsProblem(BROKER_METRICS_URL);
  return problem && `${brokerMetricsHint(BROKER_METRICS_URL, problem)}; skipped`;
}

const SKIP = await skipReason();
if (SKIP) console.log(`prometheus test: ${SKIP}`);

/** The port each service has in prometheus.yml, where `deno task dev` runs it. */
const DEV_PORTS: Record<string, ServiceName> = {
  8001: "order",
  8002: "inventory",
  8003: "notification",
};

/** `text` with `pattern` replaced by `replace`'s answer to each match, which must change something. */
function rewrite(
  text: string,
  pattern: RegExp,
  replace: (match: string, ...groups: string[]) => string,
): string {
  const rewritten = text.replace(pattern, replace);
  assert.notEqual(rewritten, text, `prometheus.yml has ${pattern}`);
  return rewritten;
}

/**
 * The project's prometheus.yml aimed at `stack`: its services' ports for the dev ports, the broker's
 * exporter for compose's, the stack's vhost for `/`, and a scrape and an evaluation every second.
 */
function stackConfig(projectConfig: string, stack: Stack): string {
  let config = rewrite(
    projectConfig,
    /(scrape_interval|evaluation_interval): \S+/g,
    (_, key) => `${key}: 1s`,
  );
  config = rewrite(
    config,
    /"host\.docker\.internal:(\d+)"/g,
    (_, port) => `"${new URL(stack.url(DEV_PORTS[port])).host}"`,
  );
  config = rewrite(config, /"rabbitmq:15692"/g, () => `"${new URL(BROKER_METRICS_URL).host}"`);
  return rewrite(config, /vhost: \["\/"\]/, () => `vhost: [${JSON.stringify(stack.vhost.name)}]`);
}

/** Every query of the Grafana dashboard, with Grafana's rate interval as a minute. */
async function dashboardQueries(): Promise<string[]> {
  const dashboard = JSON.parse(
    await Deno.readTextFile(join(ROOT, "observability", "grafana", "campus-food.json")),
  ) as { panels: Array<{ targets?: Array<{ expr: string }> }> };
  return dashboard.panels.flatMap((panel) => panel.targets ?? [])
    .map((target) => target.expr.replaceAll("$__rate_interval", "1m"));
}

/** Waits until `prometheus` has the alert `name` firing with `labels` among its labels. */
async function waitForFiring(
  prometheus: PrometheusServer,
  name: string,
  labels: Record<string, string>,
): Promise<void> {
  const wanted = { alertname: name, ...labels };
  await waitFor(`${name} ${JSON.stringify(labels)} to fire`, async () => {
    const alerts = await prometheus.alerts();
    const found = alerts.find((alert) =>
      Object.entries(wanted).every(([label, value]) => alert.labels[label] === value)
    );
    if (found?.state === "firing") return true;
    throw new Error(`alerts: ${JSON.stringify(alerts.map((a) => [a.labels.alertname, a.state]))}`);
  }, { timeoutMs: 30_000, intervalMs: 250 });
}

Deno.test({
  name:
    "a real Prometheus scrapes the stack and the broker, answers every dashboard query, and fires the alerts of a poison message and a stopped inventory, against the broker",
  ignore: SKIP !== undefined,
  ...INTEGRATION,
  fn: async (t) => {
    const ports = freePorts(SERVICES.length);
    const serviceEnv = Object.fromEntries(
      SERVICES.map((name, i) => [name, { [`${name.toUpperCase()}_PORT`]: String(ports[i]) }]),
    );
    await withStack({ serviceEnv }, async (stack) => {
      const alertRules = await Deno.readTextFile(ALERTS_FILE);
      const prometheus = await startPrometheus({
        config: stackConfig(
          await Deno.readTextFile(join(ROOT, "observability", "prometheus.yml")),
          stack,
        ),
        files: { "alerts.yml": withForDurations(alertRules, "1s") },
      });
      try {
        await t.step(
          "every target is up, the broker's queues of the stack's vhost too",
          async () => {
            await waitFor("every target to be up", async () => {
              const targets = await prometheus.targets();
              const down = targets.filter((target) => target.health !== "up");
              if (targets.length === 5 && down.length === 0) return true;
              throw new Error(`${targets.length} targets, down: ${JSON.stringify(down)}`);
            });
            // The broker counts its queues every 5 s (collect_statistics_interval).
            await waitFor("the broker's consumer count of order-placed", async () => {
              const [sample] = await prometheus.query(
                `rabbitmq_detailed_queue_consumers{queue="${Queue.orderPlaced}"}`,
              );
              return sample?.metric.vhost === stack.vhost.name && sample.value[1] === "1";
            }, { timeoutMs: 20_000, intervalMs: 250 });
          },
        );

        await t.step("every alert rule evaluates and stays quiet on a healthy stack", async () => {
          const orderId = await placeOrder(stack, {
            user_id: "u1",
            items: [{ sku: "burger", qty: 1 }],
          });
          assert.equal(await waitDecided(stack, orderId), "CONFIRMED");
          const since = Date.now();
          const rules = await waitFor("every rule to be evaluated twice from now", async () => {
            const rules = await prometheus.rules();
            const evaluated = rules.every((rule) => Date.parse(rule.lastEvaluation) > since + 1000);
            return evaluated && rules;
          });
          assert.deepEqual(
            rules.map((rule) => rule.name).sort(),
            parseAlertRules(alertRules).map((rule) => rule.name).sort(),
          );
          for (const rule of rules) {
            assert.equal(rule.health, "ok", `${rule.name}: ${rule.lastError}`);
            assert.deepEqual(await prometheus.query(rule.query), [], `${rule.name}: ${rule.query}`);
          }
          assert.deepEqual(await prometheus.alerts(), []);
        });

        await t.step("a poison message in order-placed fires DeadLettersWaiting", async () => {
          // A duplicate too, for the dashboard's panel of duplicates skipped.
          const event = orderPlaced({
            order_id: newId(),
            user_id: "u2",
            items: [{ sku: "fries", qty: 1 }],
            created_at: new Date().toISOString(),
          });
          await publishOrderPlaced(stack, event);
          await publishOrderPlaced(stack, event);
          await publishOrderPlaced(stack, "not json", `poison-${newId()}`);
          await waitForFiring(prometheus, "DeadLettersWaiting", {
            queue: deadLetterQueue(Queue.orderPlaced),
            vhost: stack.vhost.name,
          });
        });

        await t.step("stopping inventory fires ServiceDown and QueueWithoutConsumers", async () => {
          await stack.stop("inventory");
          await placeOrder(stack, { user_id: "u3", items: [{ sku: "burger", qty: 1 }] });
          await waitForFiring(prometheus, "ServiceDown", { service: "inventory" });
          await waitForFiring(prometheus, "QueueWithoutConsumers", { queue: Queue.orderPlaced });
          await waitFor("the undecided order's age in Prometheus", async () => {
            const [sample] = await prometheus.query(
              "max(campus_food_orders_oldest_pending_age_seconds)",
            );
            return Number(sample?.value[1]) >= 2;
          });
        });

        await t.step("every query of the Grafana dashboard returns data", async () => {
          // Inventory back, failing every message once: its retry is the retries panel's series.
          await stack.start("inventory", { FAULT_TRANSIENT_RATE: "1" });
          await waitFor(
            "a rate of retries in Prometheus",
            async () =>
              (await prometheus.query("rate(campus_food_messages_retried_total[1m])")).length > 0,
          );
          const empty: string[] = [];
          for (const query of await dashboardQueries()) {
            if ((await prometheus.query(query)).length === 0) empty.push(query);
          }
          assert.deepEqual(empty, [], "dashboard queries without data");
        });
      } finally {
        await prometheus.stop();
      }
    });
  },
});
