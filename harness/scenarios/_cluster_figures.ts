/**
 * What the private-cluster scenarios (`test:cluster`, `test:partition`) measure alike: where each
 * service's connection is, whether every quorum queue has its members back, and the stalls and
 * recoveries between confirmed orders.
 * @module
 */
import { waitFor } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import type { Cluster, RabbitMqNode } from "../lib/rabbitmq_cluster.ts";
import { SERVICES } from "../lib/service_process.ts";

/** The node each service's connection is on, once the management API lists all three. */
export async function servicePlacement(
  cluster: Cluster,
  vhost: string,
): Promise<Record<string, string>> {
  return await waitFor("the services' connections in the management API", async () => {
    const byName = await cluster.connectionsByNode(vhost);
    const placement = Object.fromEntries(
      SERVICES.filter((s) => byName[s]).map((s) => [s, byName[s]]),
    );
    return Object.keys(placement).length === SERVICES.length ? placement : undefined;
  }, { timeoutMs: 30_000, intervalMs: 250 });
}

/** One line saying which node each service is on, for the report. */
export async function placementLine(cluster: Cluster, vhost: string): Promise<string> {
  const placement = await servicePlacement(cluster, vhost).catch(() => undefined);
  if (!placement) return "the services' connections not all listed yet";
  return `services on ${
    Object.entries(placement).map(([s, n]) => `${s}→${label(cluster, cluster.node(n))}`).join(" ")
  }`;
}

/** Waits until every quorum queue of `vhost` has every node as a member, online. */
export async function waitReplicated(
  cluster: Cluster,
  vhost: string,
  intervalMs = 250,
): Promise<void> {
  await waitFor("every quorum queue to have its members online", async () => {
    const queues = await cluster.quorumQueues(vhost);
    return queues.length > 0 &&
      queues.every((q) =>
        q.members.length === cluster.nodes.length && q.online.length === cluster.nodes.length
      );
  }, { timeoutMs: 60_000, intervalMs });
}

/** `node-2`: a node's place in the cluster, shorter than its Erlang name. */
export function label(cluster: Cluster, node: RabbitMqNode): string {
  return `node-${cluster.nodes.indexOf(node) + 1}`;
}

/** The value that occurs most often in `values`. */
export function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0][0];
}

/** The longest time between two consecutive moments of `times`, in milliseconds. */
export function longestGapMs(times: number[]): number {
  times = [...times].sort((a, b) => a - b);
  let longest = 0;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i] - times[i - 1]);
  return longest;
}

/** Milliseconds as seconds with two decimals, or "none" for a recovery that never came. */
export function inSeconds(ms: number): number | string {
  return Number.isFinite(ms) ? round(ms / 1000, 2) : "none";
}
