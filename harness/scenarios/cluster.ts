/**
 * `deno task test:cluster`: the three services on a private three-node RabbitMQ cluster (all three
 * nodes in `AMQP_URL`) under a steady stream of orders, while in turn: the node most services are
 * connected to is SIGKILLed and started again, the leader of `order-placed` is SIGKILLed and
 * started again, and every node is restarted gracefully one at a time (a rolling restart).
 *
 * Two figures per fault, both from the orders' `updated_at` (the services and the harness share
 * this machine's clock):
 * - **recovery**: the time from the fault (the SIGKILL, or the start of `rabbitmqctl stop`) to the
 *   earliest moment an order whose first POST was sent after the fault became CONFIRMED. Orders
 *   placed before the fault are not counted, as they may have passed the broker before it.
 * - **stall**: the longest time without any order becoming CONFIRMED from the fault until the node
 *   is back with every quorum queue's members online. It catches what recovery cannot: a graceful
 *   stop closes the connections a moment after it begins, and a consumer can stall after the
 *   first orders went through.
 *
 * PASS when every accepted order is decided with exactly one reservation, one stock change and one
 * notification, the DLQs are empty, every quorum queue has its three members online, and every
 * recovery and every stall took at most 5 s.
 *
 * Where RabbitMQ is not installed here, it says so in one line and exits 0.
 * @module
 */
import { sleep, waitFor } from "../lib/async.ts";
import { expectDeadLettersEmpty } from "../lib/broker_probes.ts";
import { countEffects, type OrderEffects } from "../lib/effects.ts";
import { round, tally } from "../lib/format.ts";
import { getStock, orderStatus, waitReady } from "../lib/http_probes.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import {
  ANSWER_DEADLINE_MS,
  STREAM_STOCK,
  STREAM_STOCK_ENV,
  type StreamedOrder,
  streamOrders,
} from "../lib/order_stream.ts";
import {
  inSeconds,
  label,
  longestGapMs,
  mostCommon,
  placementLine,
  servicePlacement,
  waitReplicated,
} from "./_cluster_figures.ts";
import { checkLifecycle, hasSettled, toSettledOrder } from "../lib/order_lifecycle_checks.ts";
import {
  type Cluster,
  type RabbitMqNode,
  RabbitMqNotInstalledError,
  requireRabbitMqSbin,
  startCluster,
} from "../lib/rabbitmq_cluster.ts";
import { Queue, QUEUES } from "../../shared/topology.ts";

/** The faults, in the order they happen. */
export type ClusterFault = "kill-most-connected" | "kill-leader" | "rolling-restart";
export const CLUSTER_FAULTS: readonly ClusterFault[] = [
  "kill-most-connected",
  "kill-leader",
  "rolling-restart",
];

/** Options for {@linkcode runCluster}. */
export interface ClusterScenarioOptions extends ScenarioOptions {
  /**
   * How long orders stream, in seconds; the faults are spread over it. When they take longer, the
   * stream goes on until the last node is back and a few seconds more. @default {60}
   */
  seconds?: number;
  /** Orders per second. @default {20} */
  rate?: number;
  /** Which faults happen. @default {all of CLUSTER_FAULTS} */
  faults?: readonly ClusterFault[];
}

const USAGE = `Usage: deno task test:cluster [--seconds S] [--rate R] [--json]

  --seconds S   how long orders stream; the faults are spread over it (default 60)
  --rate R      orders per second (default 20)
  --json        print one JSON object instead of the steps

Starts a private three-node RabbitMQ cluster on loopback (never the broker on 5672), so it needs
the rabbitmq-server package installed here; without it, it says so and exits 0.`;

/** The longest a recovery may take: orders must keep being confirmed within seconds of a loss. */
const RECOVERY_LIMIT_MS = 5_000;

/**
 * How long to wait for an order placed after a fault to be confirmed before giving up and going
 * on (with the killed node started again), in milliseconds: long enough to tell a slow recovery
 * from none.
 */
const RECOVERY_DEADLINE_MS = 30_000;

/** The least time between the end of one fault (its node back) and the next, in milliseconds. */
const MIN_CALM_MS = 3_000;

/** One fault as it happened. */
interface FaultRecord {
  /** What happened, e.g. `SIGKILL node-2 (most connected: inventory, order)`. */
  what: string;
  /** A name for its figure, e.g. `kill_most_connected`. */
  key: string;
  /** When it began, in epoch milliseconds. */
  atMs: number;
  /** When its node was back with every quorum queue's members online, in epoch milliseconds. */
  endMs: number;
}

/**
 * Runs the cluster scenario on a private cluster of its own.
 * @throws {RabbitMqNotInstalledError} where RabbitMQ is not installed here (nothing was started)
 */
export async function runCluster(options: ClusterScenarioOptions = {}): Promise<ScenarioResult> {
  const { seconds = 60, rate = 20, faults = CLUSTER_FAULTS, log = console.log } = options;
  requireRabbitMqSbin();
  return await runScenario("test:cluster", options, async (report) => {
    report.step("starting a private three-node RabbitMQ cluster on loopback");
    const cluster = await startCluster({ log: (line) => report.step(line) });
    try {
      const broker = { amqpUrl: cluster.amqpUrls("/"), managementUrl: cluster.managementUrl() };
      await withStack(
        { broker, brokerLogLevel: "error", env: { INVENTORY_STOCK: STREAM_STOCK_ENV } },
        (stack) => underFaults(cluster, stack, report, { seconds, rate, faults, log }),
      );
    } finally {
      await cluster.close();
    }
  });
}

async function underFaults(
  cluster: Cluster,
  stack: Stack,
  report: Report,
  options: Required<ClusterScenarioOptions>,
): Promise<void> {
  const { seconds, rate, faults } = options;
  const vhost = stack.vhost.name;
  await waitReady(stack, 30_000);
  report.step(
    `services ready in vhost ${vhost} with AMQP_URL of ${cluster.nodes.length} nodes; ` +
      `streaming ${rate} orders/s`,
  );
  const accepted: StreamedOrder[] = [];
  let unanswered = 0;
  let resent = 0;
  const stopStream = new AbortController();
  const stream = streamOrders(
    stack,
    { rate, label: "cluster", signal: stopStream.signal },
    (result) => {
      if (result.orderId) accepted.push(result);
      else unanswered++;
      if (result.orderId && result.attempts > 1) resent++;
    },
  );
  const began = Date.now();
  const records: FaultRecord[] = [];
  const steps = faults.flatMap((fault) =>
    fault === "rolling-restart" ? cluster.nodes.map(() => fault) : [fault]
  );
  const calmMs = Math.max(MIN_CALM_MS, (seconds * 1000) / (steps.length + 1));
  let rolled = 0;
  let lastEnd = began;
  try {
    for (const [k, fault] of steps.entries()) {
      await waitUntil(Math.max(began + calmMs * (k + 1), lastEnd + MIN_CALM_MS));
      const record = fault === "rolling-restart"
        ? await restartNode(cluster, stack, report, accepted, cluster.nodes[rolled++])
        : await killNode(cluster, stack, report, accepted, fault);
      records.push(record);
      lastEnd = Date.now();
    }
    await waitUntil(Math.max(began + seconds * 1000, lastEnd + MIN_CALM_MS));
  } finally {
    stopStream.abort();
    await stream;
  }
  report.step(
    `stream done: ${accepted.length} accepted (${resent} sent again after no answer), ` +
      `${unanswered} without a 202`,
  );
  report.expect(
    unanswered === 0,
    "every order accepted with 202",
    `${unanswered} orders without a 202 after ${ANSWER_DEADLINE_MS / 1000} s`,
  );

  const effects = await checkOrders(stack, report, accepted);
  const confirmed = effects.filter((e) => e.status === "CONFIRMED");
  await expectDeadLettersEmpty(stack, report);
  await expectReplicated(cluster, report, vhost);

  const sentAt = new Map(accepted.map((a) => [a.orderId!, a.sentAtMs]));
  const confirmations = confirmed.filter((e) => e.updatedAt)
    .map((e) => ({ sentAtMs: sentAt.get(e.order_id)!, confirmedAtMs: Date.parse(e.updatedAt!) }));
  const recoveries = records.map((record) => {
    const after = confirmations.filter((c) => c.sentAtMs >= record.atMs)
      .map((c) => c.confirmedAtMs - record.atMs);
    const during = confirmations.map((c) => c.confirmedAtMs)
      .filter((at) => at > record.atMs && at < record.endMs);
    return {
      ...record,
      recoveryMs: after.length ? Math.min(...after) : Infinity,
      stallMs: longestGapMs([record.atMs, ...during, record.endMs]),
    };
  });
  for (const r of recoveries) {
    report.figure(`recovery_${r.key}_s`, inSeconds(r.recoveryMs));
    report.figure(`stall_${r.key}_s`, inSeconds(r.stallMs));
    report.expect(
      r.recoveryMs <= RECOVERY_LIMIT_MS,
      `an order placed after "${r.what}" confirmed within ${RECOVERY_LIMIT_MS / 1000} s`,
      `${inSeconds(r.recoveryMs)} s`,
    );
    report.expect(
      r.stallMs <= RECOVERY_LIMIT_MS,
      `orders confirmed at most ${RECOVERY_LIMIT_MS / 1000} s apart from "${r.what}" until ` +
        `its node was back`,
      `${inSeconds(r.stallMs)} s without a confirmation`,
    );
  }
  const worst = Math.max(...recoveries.map((r) => r.recoveryMs));
  const worstStall = Math.max(...recoveries.map((r) => r.stallMs));
  const lost =
    effects.filter((e) =>
      (e.status !== "CONFIRMED" && e.status !== "REJECTED") || e.reservations === 0 ||
      e.notifications === 0
    ).length;
  const doubled = effects.filter((e) => e.reservations > 1 || e.notifications > 1).length;
  const logs = Object.values(stack.services).flatMap((s) => s.logs);
  const warnings = Object.values(stack.services).flatMap((service) =>
    service.logs.filter((l) => l.level === "warn" || l.level === "error")
      .map((l) => `${service.name} ${l.level} ${l.msg}${l.queue ? ` ${l.queue}` : ""}`)
  );
  report.step(`warnings and errors logged by the services: ${tally(warnings)}`);
  const lines = (msg: string) => logs.filter((l) => l.msg === msg).length;
  report.figure("orders_accepted", accepted.length);
  report.figure("orders_sent_again", resent);
  report.figure("confirmed", confirmed.length);
  report.figure("rejected", effects.filter((e) => e.status === "REJECTED").length);
  report.figure("lost", lost);
  report.figure("doubled", doubled);
  report.figure("worst_recovery_s", inSeconds(worst));
  report.figure("worst_stall_s", inSeconds(worstStall));
  report.figure(
    "longest_confirmation_gap_s",
    inSeconds(longestGapMs(confirmations.map((c) => c.confirmedAtMs))),
  );
  report.figure(
    "worst_order_latency_s",
    round(Math.max(0, ...confirmations.map((c) => c.confirmedAtMs - c.sentAtMs)) / 1000, 2),
  );
  report.figure("reconnects", lines("reconnected to broker"));
  report.figure(
    "consumers_reattached",
    lines("consumer receives nothing although its queue holds messages, attaching again"),
  );
  report.figure("duplicates_skipped", lines("skipped duplicate"));
  report.figure(
    "timeline",
    records.map((r) => `${round((r.atMs - began) / 1000, 1)}s ${r.what}`).join(" | "),
  );
  report.summary(
    `${accepted.length} orders through ${records.length} node faults, none lost or doubled ` +
      `(${confirmed.length} confirmed); worst recovery ${inSeconds(worst)} s, worst stall ` +
      `${inSeconds(worstStall)} s`,
  );
}

/** The decision timeout the services run with (their default): no order should come near it. */
const DECISION_TIMEOUT_MS = 120_000;

/**
 * Waits (with a deadline) until every accepted order has settled, then checks them as chaos does:
 * each CONFIRMED or REJECTED with exactly one reservation, stock conserved and held only by
 * CONFIRMED orders, each student told once and truly (`checkLifecycle()`).
 */
async function checkOrders(
  stack: Stack,
  report: Report,
  accepted: StreamedOrder[],
): Promise<OrderEffects[]> {
  await waitReady(stack, 30_000);
  const settleBegan = performance.now();
  const orderIds = accepted.map((a) => a.orderId!);
  await waitFor("every accepted order to settle", async () => {
    const effects = await countEffects(stack, orderIds);
    return effects.every((e) => hasSettled(toSettledOrder(e)));
  }, { timeoutMs: 60_000, intervalMs: 250 }).catch(() => {});
  report.figure("settle_s", round((performance.now() - settleBegan) / 1000, 1));
  const effects = await countEffects(stack, orderIds);
  const outcomes = effects.map((e) => `${e.status}/${e.reservations} reservation`);
  report.expect(
    effects.every((e) =>
      (e.status === "CONFIRMED" || e.status === "REJECTED") && e.reservations === 1
    ),
    "each accepted order CONFIRMED or REJECTED with 1 reservation",
    tally(outcomes),
  );
  checkLifecycle(report, effects.map(toSettledOrder), {
    stock: { initial: STREAM_STOCK, onHand: await getStock(stack) },
    decisionTimeoutMs: DECISION_TIMEOUT_MS,
    expiryLateMs: 5_000,
  });
  return effects;
}

/** SIGKILLs the node most services are on, or the leader of `order-placed`, then starts it again. */
async function killNode(
  cluster: Cluster,
  stack: Stack,
  report: Report,
  accepted: StreamedOrder[],
  fault: Exclude<ClusterFault, "rolling-restart">,
): Promise<FaultRecord> {
  const vhost = stack.vhost.name;
  let node: RabbitMqNode;
  let why: string;
  if (fault === "kill-most-connected") {
    const placement = await servicePlacement(cluster, vhost);
    node = cluster.node(mostCommon(Object.values(placement)));
    why = `most connected: ${
      Object.entries(placement).filter(([, n]) => n === node.name).map(([s]) => s).join(", ")
    }`;
  } else {
    const leader = await waitFor(
      `a leader of ${Queue.orderPlaced}`,
      () => cluster.leaderOf(Queue.orderPlaced, vhost),
    );
    node = cluster.node(leader);
    why = `leader of ${Queue.orderPlaced}`;
  }
  const record: FaultRecord = {
    what: `SIGKILL ${label(cluster, node)} (${why})`,
    key: fault.replaceAll("-", "_"),
    atMs: Date.now(),
    endMs: NaN,
  };
  await cluster.kill(node);
  report.step(`fault: ${record.what}`);
  await reportRecovery(cluster, stack, report, { accepted, record });
  await cluster.start(node);
  report.step(`${label(cluster, node)} started again`);
  await waitReplicated(cluster, vhost);
  record.endMs = Date.now();
  report.step(
    `every quorum queue has its members online again; ${await placementLine(cluster, vhost)}`,
  );
  return record;
}

/** One step of the rolling restart: stops `node` gracefully and starts it again. */
async function restartNode(
  cluster: Cluster,
  stack: Stack,
  report: Report,
  accepted: StreamedOrder[],
  node: RabbitMqNode,
): Promise<FaultRecord> {
  const record: FaultRecord = {
    what: `rolling restart of ${label(cluster, node)}`,
    key: `restart_${label(cluster, node).replace("-", "_")}`,
    atMs: Date.now(),
    endMs: NaN,
  };
  report.step(`fault: ${record.what} (graceful stop, start)`);
  const restarting = cluster.restart(node);
  const recovered = reportRecovery(cluster, stack, report, { accepted, record });
  await Promise.all([restarting, recovered]);
  report.step(`${label(cluster, node)} back in the cluster`);
  await waitReplicated(cluster, stack.vhost.name);
  record.endMs = Date.now();
  report.step(
    `every quorum queue has its members online again; ${await placementLine(
      cluster,
      stack.vhost.name,
    )}`,
  );
  return record;
}

/**
 * Waits until an order placed after `record` is CONFIRMED and reports roughly when: the exact
 * figure is taken from the orders' `updated_at` at the end. Never rejects: without a recovery it
 * reports what the consumed queues look like, and the final check fails.
 */
async function reportRecovery(
  cluster: Cluster,
  stack: Stack,
  report: Report,
  fault: { accepted: StreamedOrder[]; record: FaultRecord },
): Promise<void> {
  const { accepted, record } = fault;
  const seen = new Set<string>();
  try {
    await waitFor(`an order placed after "${record.what}" to be confirmed`, async () => {
      const after = accepted.filter((a) => a.sentAtMs >= record.atMs && !seen.has(a.orderId!))
        .slice(0, 20);
      for (const order of after) {
        const status = await orderStatus(stack, order.orderId!);
        if (status === "CONFIRMED") return true;
        if (status !== "PENDING") seen.add(order.orderId!);
      }
      return false;
    }, { timeoutMs: RECOVERY_DEADLINE_MS, intervalMs: 100 });
    report.step(`an order placed after the fault confirmed (~${Date.now() - record.atMs} ms)`);
  } catch {
    report.step(
      `no order placed after the fault confirmed within ${RECOVERY_DEADLINE_MS / 1000} s; ` +
        `queues: ${await describeQueues(cluster, stack.vhost.name)}`,
    );
  }
}

/** Each consumed queue's leader, online members, ready and unacked messages and consumers. */
async function describeQueues(cluster: Cluster, vhost: string): Promise<string> {
  const lines = await Promise.all(QUEUES.map(async (queue) => {
    try {
      const info = await cluster.api()(
        "GET",
        `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`,
      ) as {
        leader?: string;
        online?: string[];
        messages_ready?: number;
        messages_unacknowledged?: number;
        consumers?: number;
      };
      const leader = info.leader ? label(cluster, cluster.node(info.leader)) : "none";
      return `${queue} leader ${leader}, ${info.online?.length ?? 0} online, ` +
        `${info.messages_ready ?? "?"} ready, ${info.messages_unacknowledged ?? "?"} unacked, ` +
        `${info.consumers ?? "?"} consumers`;
    } catch (error) {
      return `${queue} unknown (${(error as Error).message})`;
    }
  }));
  return lines.join("; ");
}

async function expectReplicated(cluster: Cluster, report: Report, vhost: string): Promise<void> {
  await waitReplicated(cluster, vhost).catch(() => {});
  const queues = await cluster.quorumQueues(vhost);
  const short = queues.filter((q) =>
    q.members.length !== cluster.nodes.length || q.online.length !== cluster.nodes.length
  );
  report.step(
    `${queues.length} quorum queues, ${queues.length - short.length} with 3 members online`,
  );
  report.expect(
    queues.length > 0 && short.length === 0,
    `every quorum queue with ${cluster.nodes.length} members online`,
    short.map((q) => `${q.name} ${q.online.length}/${q.members.length}`).join(", ") ||
      "no quorum queues",
  );
}

function waitUntil(epochMs: number): Promise<void> {
  return sleep(epochMs - Date.now());
}

if (import.meta.main) {
  try {
    requireRabbitMqSbin();
  } catch (error) {
    if (!(error instanceof RabbitMqNotInstalledError)) throw error;
    const json = Deno.args.includes("--json");
    console.log(
      json
        ? JSON.stringify({ name: "test:cluster", skipped: true, reason: error.message })
        : `SKIP test:cluster: ${error.message}`,
    );
    Deno.exit(0);
  }
  await runFromCommandLine(
    "test:cluster",
    (args, log) => runCluster({ seconds: args.seconds, rate: args.rate, log }),
    { usage: USAGE, accepts: ["seconds", "rate"] },
  );
}
