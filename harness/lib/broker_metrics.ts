/**
 * The broker's own metrics: RabbitMQ's Prometheus endpoint (the `rabbitmq_prometheus` plugin, on
 * port 15692), which the alerts on queues without consumers, dead letters, alarms and nodes read.
 * Where it is and whether it answers, and the one line that says how to turn it on; the tools check
 * it, they never enable a plugin themselves (the management API cannot).
 * @module
 */
import { brokerAddress } from "./broker_address.ts";

/** The command that turns the endpoint on, on the broker's machine (or each node of a cluster). */
export const ENABLE_BROKER_METRICS = "rabbitmq-plugins enable rabbitmq_prometheus";

/**
 * The base URL of the broker's Prometheus endpoint: `RABBITMQ_PROMETHEUS_URL`, else port 15692 on
 * the host of `managementUrl` (the harness's `RABBITMQ_MANAGEMENT_URL` by default).
 */
export function brokerMetricsUrl(managementUrl = brokerAddress().managementUrl): string {
  const configured = Deno.env.get("RABBITMQ_PROMETHEUS_URL");
  if (configured) return configured.replace(/\/+$/, "");
  return `http://${new URL(managementUrl).hostname}:15692`;
}

/** Why the endpoint at `url` does not serve the broker's metrics, or undefined when it does. */
export async function brokerMetricsProblem(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) });
    const text = await response.text();
    if (!response.ok) return `it answers ${response.status}`;
    return text.includes("rabbitmq_identity_info") ? undefined : "it serves no RabbitMQ metrics";
  } catch {
    return "nothing answers";
  }
}

/** One line saying that the endpoint at `url` does not serve (`problem`), and how to turn it on. */
export function brokerMetricsHint(url: string, problem: string): string {
  return `RabbitMQ's Prometheus endpoint at ${
    new URL(url).host
  } does not serve (${problem}): run ` +
    `"${ENABLE_BROKER_METRICS}" on the broker, or set RABBITMQ_PROMETHEUS_URL to it`;
}
