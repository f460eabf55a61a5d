/**
 * `deno task test:partition`, short: the node most services are on isolated from the other two
 * under `pause_minority`, on a private three-node cluster with each node as its own user (never the
 * broker on 5672). Skipped where the rabbitmq-server package is not installed, or where the
 * machine refuses the firewall rules (no iptables, not root, no `owner` or `connmark` match).
 */
import assert from "node:assert/strict";
import { whyNoRules } from "../lib/network_rules.ts";
import { findRabbitMqSbin } from "../lib/rabbitmq_cluster.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses, clusterTestRunsHere } from "./_testing.ts";
import { runPartition } from "./partition.ts";

/** Why the test cannot run here, or undefined when it can. */
async function whySkipped(): Promise<string | undefined> {
  if (findRabbitMqSbin() === undefined) {
    return "the rabbitmq-server package is not installed here (dpkg -L lists no sbin/rabbitmq-server)";
  }
  const refused = await whyNoRules();
  return refused ? `this machine refuses the firewall rules (${refused})` : undefined;
}

const SKIPPED = await whySkipped();
if (SKIPPED) console.log(`partition_test: ${SKIPPED}, so the partition test is skipped`);

Deno.test(
  "runPartition() loses and doubles nothing and confirms orders again within seconds when a node is isolated under pause_minority",
  { ...INTEGRATION, ignore: SKIPPED !== undefined || !clusterTestRunsHere("partition_test") },
  async () => {
    const result = await assertPasses(
      (log) =>
        runPartition({
          modes: ["pause_minority"],
          faults: ["isolate-node"],
          holdSeconds: 20,
          rate: 5,
          log,
        }),
      [
        "pause_minority_isolate_node_recovery_s",
        "pause_minority_isolate_node_stall_s",
        "pause_minority_isolate_node_healed",
      ],
    );
    assert.equal(result.figures.pause_minority_lost, 0);
    assert.equal(result.figures.pause_minority_doubled, 0);
    assert.equal(result.figures.pause_minority_isolate_node_healed, "by itself");
  },
);
