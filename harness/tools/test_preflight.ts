/**
 * The first step of `deno task test`: a broker at `AMQP_URL` and its management API at
 * `RABBITMQ_MANAGEMENT_URL`, started or enabled here where they can be, or one line saying how; a
 * broker that cannot run the project's quorum queues, said in one line;
 * and one line each saying how to install Chromium when the console's browser test cannot find it,
 * and how to enable the broker's Prometheus endpoint when the Prometheus test cannot scrape it.
 * @module
 */
import { deadLetteringProblem, ensureBroker, ensureManagementApi } from "../lib/broker_check.ts";
import { brokerAddress } from "../lib/broker_address.ts";
import { CHROMIUM_HINT, findChromium } from "../lib/chromium.ts";
import {
  brokerMetricsHint,
  brokerMetricsProblem,
  brokerMetricsUrl,
} from "../lib/broker_metrics.ts";

if (import.meta.main) {
  const { amqpUrl, managementUrl } = brokerAddress();
  let ready = await ensureBroker(amqpUrl, "test") &&
    await ensureManagementApi(managementUrl, { who: "test" });
  const problem = ready
    ? await deadLetteringProblem((line) => console.log(`test: ${line}`))
    : undefined;
  if (problem) {
    console.error(
      `test: the broker cannot declare a quorum queue with at-least-once dead-lettering ` +
        `(${problem}); on RabbitMQ 3.10 that is its dead-letter supervisor lost after many ` +
        `short-lived queues: restart the broker (rabbitmqctl stop_app && rabbitmqctl start_app)`,
    );
    ready = false;
  }
  if (!findChromium()) {
    console.log(`test: ${CHROMIUM_HINT}; the console's browser test will be skipped`);
  }
  const metricsUrl = brokerMetricsUrl(managementUrl);
  const metricsProblem = ready ? await brokerMetricsProblem(metricsUrl) : undefined;
  if (metricsProblem) {
    console.log(
      `test: ${brokerMetricsHint(metricsUrl, metricsProblem)}; the Prometheus test will be skipped`,
    );
  }
  Deno.exit(ready ? 0 : 1);
}
