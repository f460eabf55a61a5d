/**
 * The three scenarios with short settings, against the broker: this file is how `deno task test`
 * runs them. Each makes its own vhost, data directory and ports, and deletes them afterwards.
 */
import assert from "node:assert/strict";
import { runBacklog } from "./backlog.ts";
import { runIdempotency } from "./idempotency.ts";
import { runDlq } from "./dlq.ts";
import { runChaos } from "./chaos.ts";
import { runScale } from "./scale.ts";
import { runCluster } from "./cluster.ts";
import { findRabbitMqSbin } from "../lib/rabbitmq_cluster.ts";
import { POSTGRES_UNAVAILABLE } from "../../shared/_test_stores.ts";
import { formatResult, type ScenarioResult } from "../lib/steps.ts";

const integration = { sanitizeOps: false, sanitizeResources: false };

/** The cluster test starts nodes with the installed package's own scripts, or is skipped. */
const RABBITMQ_NOT_INSTALLED = findRabbitMqSbin() === undefined;
if (RABBITMQ_NOT_INSTALLED) {
  console.log(
    "scenario tests: the rabbitmq-server package is not installed here (dpkg -L lists no " +
      "sbin/rabbitmq-server), so the private-cluster test is skipped",
  );
}

/** Keeps the steps for the assertion message instead of printing them between test names. */
function collect(): { lines: string[]; log: (line: string) => void } {
  const lines: string[] = [];
  return { lines, log: (line) => lines.push(line) };
}

function assertPass(result: ScenarioResult, lines: string[], figures: string[]): void {
  assert.ok(result.pass, `${lines.join("\n")}\n${formatResult(result)}`);
  for (const figure of figures) {
    assert.ok(figure in result.figures, `figure ${figure} is missing: ${JSON.stringify(result)}`);
  }
}

Deno.test(
  "runBacklog() passes with inventory down 3 s for 15 orders, against the broker",
  integration,
  async () => {
    const { lines, log } = collect();
    const chartFile = await Deno.makeTempFile({ suffix: ".svg" });
    try {
      const result = await runBacklog({ downSeconds: 3, orders: 15, chartFile, log });
      assertPass(result, lines, [
        "peak_depth",
        "drain_s",
        "drain_rate_msg_per_s",
        "all_decided_s",
      ]);
      assert.equal(result.figures.peak_depth, 15);
      assert.ok(lines.some((line) => line.includes("▲ start")), "the chart is printed");
      assert.match(await Deno.readTextFile(chartFile), /^<svg[^]*<\/svg>\n$/);
    } finally {
      await Deno.remove(chartFile);
    }
  },
);

Deno.test(
  "runIdempotency() passes with duplicates and a SIGKILL mid-burst, against the broker",
  integration,
  async () => {
    const { lines, log } = collect();
    const result = await runIdempotency({ log });
    assertPass(result, lines, ["handled_before_kill", "unacked_redelivered", "orders"]);
    assert.equal(result.figures.orders, 303);
    assert.ok(Number(result.figures.unacked_redelivered) > 0);
  },
);

Deno.test(
  "runDlq() passes with ten kinds of poison between valid orders, against the broker",
  integration,
  async () => {
    const { lines, log } = collect();
    const result = await runDlq({ log });
    assertPass(result, lines, ["poison_in_dlq", "valid_confirmed"]);
    assert.equal(result.figures.poison_in_dlq, 10);
    assert.equal(result.figures.valid_confirmed, 11);
  },
);

Deno.test(
  "runChaos() passes through kills, forced closes, transient faults and broker outages, against the broker",
  integration,
  async () => {
    const { lines, log } = collect();
    const result = await runChaos({ seconds: 12, rate: 15, brokerOutage: true, log });
    assertPass(result, lines, [
      "orders_accepted",
      "kills_inventory",
      "outages",
      "retries",
      "timeline",
    ]);
    assert.equal(result.figures.outages, 2);
    assert.equal(result.figures.kills_inventory, 2);
    assert.ok(Number(result.figures.expired) > 0, "orders expired while inventory was stopped");
    assert.ok(Number(result.figures.cancelled) > 0, "orders were cancelled");
    assert.ok(Number(result.figures.retries) > 0, "transient faults were injected and retried");
  },
);

Deno.test(
  "runChaos() passes through two database outages on PostgreSQL beside the other faults, with no valid message dead-lettered, against the broker",
  { ...integration, ignore: POSTGRES_UNAVAILABLE !== undefined },
  async () => {
    const { lines, log } = collect();
    const result = await runChaos({ seconds: 12, rate: 15, databaseOutage: true, log });
    assertPass(result, lines, ["database_outages", "pauses", "resumed_after_s_max", "retries"]);
    assert.equal(result.figures.database_outages, 2);
    assert.ok(Number(result.figures.pauses) >= 2, `pauses: ${result.figures.pauses}`);
  },
);

Deno.test(
  "runScale() passes with 2 order, 3 inventory and 2 notification instances on PostgreSQL under SIGKILLs, against the broker",
  { ...integration, ignore: POSTGRES_UNAVAILABLE !== undefined },
  async () => {
    const { lines, log } = collect();
    const result = await runScale({ orders: 100, seconds: 8, killIntervalMs: 1500, log });
    assertPass(result, lines, [
      "accepted_per_order_instance",
      "handled_per_inventory_instance",
      "notified_per_notification_instance",
      "kill_timeline",
      "outbox_rows_left_by_killed_order",
    ]);
    assert.equal(result.figures.accepted, 100);
    assert.equal(result.figures.instances, "2 order, 3 inventory, 2 notification");
    // The first kill is always an order instance's, in the middle of a burst of orders.
    assert.ok(Number(result.figures.kills) >= 2, `kills: ${result.figures.kill_timeline}`);
    assert.match(String(result.figures.kill_timeline), /^[\d.]+s order-\d/);
    assert.ok(Number(result.figures.expired) > 0, "orders expired while inventory was stopped");
  },
);

Deno.test(
  "runCluster() loses and doubles nothing when the most connected node and the order-placed leader are SIGKILLed, on a private three-node cluster",
  { ...integration, ignore: RABBITMQ_NOT_INSTALLED },
  async () => {
    const { lines, log } = collect();
    // The two SIGKILLs only: the rolling restart adds some 40 s, and test:cluster runs it.
    const result = await runCluster({
      seconds: 10,
      faults: ["kill-most-connected", "kill-leader"],
      log,
    });
    assertPass(result, lines, [
      "recovery_kill_most_connected_s",
      "recovery_kill_leader_s",
      "stall_kill_leader_s",
      "worst_recovery_s",
      "timeline",
    ]);
    assert.equal(result.figures.lost, 0);
    assert.equal(result.figures.doubled, 0);
  },
);
