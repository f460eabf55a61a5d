/**
 * `deno task test:cluster` with its two SIGKILLs, on a private three-node cluster it starts
 * (never the broker on 5672); skipped where the rabbitmq-server package is not installed.
 */
import assert from "node:assert/strict";
import { findRabbitMqSbin } from "../lib/rabbitmq_cluster.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { assertPasses, clusterTestRunsHere } from "./_testing.ts";
import { runCluster } from "./cluster.ts";

/** The cluster test starts nodes with the installed package's own scripts, or is skipped. */
const RABBITMQ_NOT_INSTALLED = findRabbitMqSbin() === undefined;
if (RABBITMQ_NOT_INSTALLED) {
  console.log(
    "cluster_test: the rabbitmq-server package is not installed here (dpkg -L lists no " +
      "sbin/rabbitmq-server), so the private-cluster test is skipped",
  );
}

Deno.test(
  "runCluster() loses and doubles nothing when the most connected node and the order-placed leader are SIGKILLed, on a private three-node cluster",
  { ...INTEGRATION, ignore: RABBITMQ_NOT_INSTALLED || !clusterTestRunsHere("cluster_test") },
  async () => {
    // The two SIGKILLs only: the rolling restart adds some 40 s, and test:cluster runs it.
    const result = await assertPasses(
      (log) =>
        runCluster({
          seconds: 10,
          faults: ["kill-most-connected", "kill-leader"],
          log,
        }),
      [
        "recovery_kill_most_connected_s",
        "recovery_kill_leader_s",
        "stall_kill_leader_s",
        "worst_recovery_s",
        "timeline",
      ],
    );
    assert.equal(result.figures.lost, 0);
    assert.equal(result.figures.doubled, 0);
  },
);
