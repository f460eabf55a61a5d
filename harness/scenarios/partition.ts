/**
 * `deno task test:partition`: the three services on a private three-node RabbitMQ cluster (all
 * three nodes in `AMQP_URL`, each node a system user of its own, `net_ticktime` short so that a
 * partition is noticed quickly) under a steady stream of orders, through network faults made with
 * `iptables` on loopback (see `harness/lib/network_rules.ts`), one after another:
 * - **isolate-node**: the node most services are connected to is cut off from the other two, both
 *   ways, while the services stay connected to it and to the others; then healed.
 * - **silence-amqp**: that node's answers on its AMQP port are dropped (not refused), so nothing
 *   tells its clients that their connection is dead; then healed.
 * - **one-way-cut**: what the most connected node sends to the leader of `order-placed` is
 *   dropped, and nothing else; then healed.
 *
 * Each in both `cluster_partition_handling` modes, `pause_minority` and `ignore` (a new cluster
 * for each). When a partition outlives the heal (RabbitMQ's `ignore` keeps the cluster split
 * until a node restarts), it does what an operator would: restarts the node that was cut off, and
 * says so.
 *
 * Per fault, from the orders' `updated_at` as in `test:cluster`: **recovery** (the fault to the
 * first order placed after it being CONFIRMED), **stall** (the longest time without any order
 * becoming CONFIRMED from the fault until the cluster is whole again), orders placed in its window
 * that were lost or doubled, the DLQs after it, and whether the cluster healed by itself.
 *
 * PASS when every accepted order is decided once (one reservation, one notification, stock
 * conserved), nothing is in a DLQ, the cluster is whole again after every fault (by itself or
 * after the operator's restart), and every recovery and stall stays within a limit.
 *
 * Where RabbitMQ is not installed, or the machine refuses the rules, it says so in one line and
 * exits 0. Rules are removed and nodes stopped on exit and on Ctrl-C, whatever happened.
 * @module
 */
import { sleep, waitFor } from "../lib/async.ts";
import { readCommandLine } from "../lib/command_line.ts";
import { countEffects, isDoubled, isLost, type OrderEffects } from "../lib/effects.ts";
import { round, tally } from "../lib/format.ts";
import { getStock, orderStatus, waitReady } from "../lib/http_probes.ts";
import { isInterrupted } from "../lib/interrupt.ts";
import {
  cutOneWay,
  type FaultRules,
  isolate,
  openRuleChain,
  type RuleChain,
  silenceAmqp,
  whyNoRules,
} from "../lib/network_rules.ts";
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
  ANSWER_DEADLINE_MS,
  STREAM_STOCK,
  STREAM_STOCK_ENV,
  type StreamedOrder,
  streamOrders,
} from "../lib/order_stream.ts";
import {
  type Cluster,
  nodeUserName,
  type PartitionHandling,
  type RabbitMqNode,
  RabbitMqNotInstalledError,
  requireRabbitMqSbin,
  startCluster,
} from "../lib/rabbitmq_cluster.ts";
import { formatResult, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { ensureSystemUser } from "../lib/system_users.ts";
import { deadLetterQueue, Queue, QUEUES } from "../../shared/topology.ts";

/** The faults, in the order they happen. */
export type PartitionFault = "isolate-node" | "silence-amqp" | "one-way-cut";
export const PARTITION_FAULTS: readonly PartitionFault[] = [
  "isolate-node",
  "silence-amqp",
  "one-way-cut",
];

/** The partition handling modes compared: the one RabbitMQ recommends, and its default. */
export type PartitionMode = Extract<PartitionHandling, "pause_minority" | "ignore">;
export const PARTITION_MODES: readonly PartitionMode[] = ["pause_minority", "ignore"];

/** Options for {@linkcode runPartition}. */
export interface PartitionScenarioOptions extends ScenarioOptions {
  /** Which `cluster_partition_handling` modes to run, each on a cluster of its own. @default {both} */
  modes?: readonly PartitionMode[];
  /** Which faults happen in each mode. @default {all of PARTITION_FAULTS} */
  faults?: readonly PartitionFault[];
  /** How long each fault lasts before it is healed, in seconds. @default {30} */
  holdSeconds?: number;
  /** Orders per second. @default {10} */
  rate?: number;
}

/** Thrown where this machine refuses the firewall rules: callers say so and skip. */
export class NetworkRulesRefusedError extends Error {
  override name = "NetworkRulesRefusedError";
}

const USAGE = `Usage: deno task test:partition [--mode M] [--fault F] [--hold S] [--rate R] [--json]

  --mode M    pause_minority or ignore (default: both, one cluster each)
  --fault F   isolate-node, silence-amqp or one-way-cut (default: all three, in that order)
  --hold S    how long each fault lasts before it is healed, in seconds (default 30)
  --rate R    orders per second (default 10)
  --json      print one JSON object instead of the steps

Starts a private three-node RabbitMQ cluster on loopback per mode (never the broker on 5672),
each node as system user campus-food-node-<n> (made when missing), and cuts it with iptables
rules in a chain of its own, removed on exit and on Ctrl-C. It needs root, iptables and the
rabbitmq-server package; without them, it says so and exits 0.`;

/** The Erlang `net_ticktime` of the nodes, in seconds: a silent peer is taken for gone this soon. */
export const NET_TICKTIME_S = 10;

/**
 * The longest a recovery or a stall may take under `pause_minority`, in milliseconds: a partition
 * takes up to about `net_ticktime` and a quarter to be noticed, and the services a few heartbeats
 * to move.
 */
const RECOVERY_LIMIT_MS = 20_000;

/**
 * The longest a recovery or a stall may take in `mode` when each fault is held for `holdMs`.
 * Under `ignore` the cut-off node keeps its clients and its quorum queues' old leaders, which
 * answer as if nothing were wrong: a consumer attached there can wait until the network heals.
 */
function recoveryLimitMs(mode: PartitionMode, holdMs: number): number {
  return mode === "pause_minority" ? RECOVERY_LIMIT_MS : holdMs + RECOVERY_LIMIT_MS;
}

/** How long a healed network may take to make the cluster whole again, in milliseconds. */
const HEAL_DEADLINE_MS = 60_000;

/** How long the operator's `rabbitmqctl stop` may take before the node is SIGKILLed instead. */
const OPERATOR_STOP_MS = 60_000;

/** The calm before the first fault and between two faults, in milliseconds. */
const CALM_MS = 8_000;

/** One fault as it happened. */
interface FaultRecord {
  fault: PartitionFault;
  /** What happened, e.g. `node-2 isolated from node-1, node-3 (services on it: order)`. */
  what: string;
  /** When the rules went in, in epoch milliseconds. */
  atMs: number;
  /** When the rules came out. */
  healMs: number;
  /** When the cluster was whole again with every quorum queue's members online. */
  endMs: number;
  /** `by itself`, or what the operator had to do, or `no`. */
  healed: string;
  /** Messages in the DLQs once it was over. */
  deadLettered: number;
}

/**
 * Runs the partition scenario, each mode on a private cluster of its own.
 * @throws {RabbitMqNotInstalledError} where RabbitMQ is not installed here (nothing was started)
 * @throws {NetworkRulesRefusedError} where the machine refuses the firewall rules
 */
export async function runPartition(
  options: PartitionScenarioOptions = {},
): Promise<ScenarioResult> {
  const {
    modes = PARTITION_MODES,
    faults = PARTITION_FAULTS,
    holdSeconds = 30,
    rate = 10,
  } = options;
  requireRabbitMqSbin();
  const refused = await whyNoRules();
  if (refused) throw new NetworkRulesRefusedError(`This machine refuses the rules: ${refused}`);
  return await runScenario("test:partition", options, async (report) => {
    const summaries: string[] = [];
    for (const mode of modes) {
      try {
        summaries.push(await runMode(report, { mode, faults, holdMs: holdSeconds * 1000, rate }));
      } catch (error) {
        // One mode's failure must not hide what the other measures.
        if (isInterrupted()) throw error;
        report.step(`${mode}: stopped by an error: ${(error as Error).message}`);
        report.expect(false, `${mode}: every fault run to its end`, (error as Error).message);
      }
    }
    report.summary(summaries.join("; "));
  });
}

interface ModeOptions {
  mode: PartitionMode;
  faults: readonly PartitionFault[];
  holdMs: number;
  rate: number;
}

/** One mode: its own rules, cluster and stack, the faults in turn, the checks. */
async function runMode(report: Report, options: ModeOptions): Promise<string> {
  const { mode } = options;
  report.step(`${mode}: starting a private three-node cluster, each node as a user of its own`);
  const users = await Promise.all([1, 2, 3].map((i) => ensureSystemUser(nodeUserName(i))));
  // The chain goes in before the nodes start, so that their links are marked from the first packet.
  const chain = await openRuleChain(users.map((user) => user.uid));
  try {
    const cluster = await startCluster({
      nodesAsOwnUsers: true,
      extras: { partitionHandling: mode, netTicktimeS: NET_TICKTIME_S },
      log: (line) => report.step(`${mode}: ${line}`),
    });
    try {
      const broker = { amqpUrl: cluster.amqpUrls("/"), managementUrl: cluster.managementUrl() };
      return await withStack(
        { broker, brokerLogLevel: "error", env: { INVENTORY_STOCK: STREAM_STOCK_ENV } },
        (stack) => underFaults(cluster, chain, stack, report, options),
      );
    } finally {
      await cluster.close();
    }
  } finally {
    await chain.close();
  }
}

async function underFaults(
  cluster: Cluster,
  chain: RuleChain,
  stack: Stack,
  report: Report,
  options: ModeOptions,
): Promise<string> {
  const { mode, faults, holdMs, rate } = options;
  const vhost = stack.vhost.name;
  await waitReady(stack, 30_000);
  report.step(`${mode}: services ready in vhost ${vhost}; streaming ${rate} orders/s`);
  const accepted: StreamedOrder[] = [];
  let unanswered = 0;
  const stopStream = new AbortController();
  const stream = streamOrders(
    stack,
    { rate, label: `partition-${mode}`, signal: stopStream.signal },
    (result) => {
      if (result.orderId) accepted.push(result);
      else unanswered++;
    },
  );
  const records: FaultRecord[] = [];
  try {
    for (const fault of faults) {
      await sleep(CALM_MS);
      records.push(
        await runFault(cluster, chain, stack, report, { mode, fault, holdMs, accepted }),
      );
    }
    await sleep(CALM_MS);
  } finally {
    stopStream.abort();
    await stream;
  }
  report.step(`${mode}: stream done: ${accepted.length} accepted, ${unanswered} without a 202`);
  report.expect(
    unanswered === 0,
    `${mode}: every order accepted with 202`,
    `${unanswered} orders without a 202 after ${ANSWER_DEADLINE_MS / 1000} s`,
  );

  const effects = await checkOrders(stack, report, mode, accepted);
  const byId = new Map(effects.map((e) => [e.order_id, e]));
  const confirmedAt = effects.filter((e) => e.status === "CONFIRMED" && e.updatedAt)
    .map((e) => ({ id: e.order_id, atMs: Date.parse(e.updatedAt!) }));
  const sentAt = new Map(accepted.map((a) => [a.orderId!, a.sentAtMs]));
  const worst: number[] = [];
  const limitMs = recoveryLimitMs(mode, holdMs);
  for (const [k, record] of records.entries()) {
    const key = `${mode}_${record.fault.replaceAll("-", "_")}`;
    const windowEnd = records[k + 1]?.atMs ?? Infinity;
    const recoveryMs = Math.min(
      ...confirmedAt.filter((c) => sentAt.get(c.id)! >= record.atMs)
        .map((c) => c.atMs - record.atMs),
    );
    const during = confirmedAt.map((c) => c.atMs).filter((at) =>
      at > record.atMs && at < record.endMs
    );
    const stallMs = longestGapMs([record.atMs, ...during, record.endMs]);
    const placed = accepted.filter((a) => a.sentAtMs >= record.atMs && a.sentAtMs < windowEnd)
      .map((a) => byId.get(a.orderId!)).filter((e): e is OrderEffects => e !== undefined);
    const lost = placed.filter(isLost).length;
    const doubled = placed.filter(isDoubled).length;
    report.figure(`${key}_recovery_s`, inSeconds(recoveryMs));
    report.figure(`${key}_stall_s`, inSeconds(stallMs));
    report.figure(`${key}_orders`, placed.length);
    report.figure(`${key}_lost`, lost);
    report.figure(`${key}_doubled`, doubled);
    report.figure(`${key}_dead_lettered`, record.deadLettered);
    report.figure(`${key}_healed`, record.healed);
    report.step(
      `${mode}: ${record.what}: recovery ${inSeconds(recoveryMs)} s, stall ${
        inSeconds(stallMs)
      } s, ${placed.length} orders in its window, ${lost} lost, ${doubled} doubled, ` +
        `${record.deadLettered} dead-lettered, healed ${record.healed}`,
    );
    report.expect(
      recoveryMs <= limitMs,
      `${mode}: an order placed after "${record.what}" confirmed within ${limitMs / 1000} s`,
      `${inSeconds(recoveryMs)} s`,
    );
    report.expect(
      stallMs <= limitMs,
      `${mode}: orders confirmed at most ${limitMs / 1000} s apart from ` +
        `"${record.what}" until the cluster was whole again`,
      `${inSeconds(stallMs)} s without a confirmation`,
    );
    report.expect(
      record.healed !== "no",
      `${mode}: the cluster whole again after "${record.what}"`,
      "a partition left after the operator's restart",
    );
    report.expect(
      record.deadLettered === 0,
      `${mode}: nothing dead-lettered after "${record.what}"`,
      `${record.deadLettered} messages in the DLQs`,
    );
    worst.push(recoveryMs, stallMs);
  }
  const lost = effects.filter(isLost).length;
  const doubled = effects.filter(isDoubled).length;
  report.figure(`${mode}_orders_accepted`, accepted.length);
  report.figure(`${mode}_lost`, lost);
  report.figure(`${mode}_doubled`, doubled);
  report.expect(lost === 0, `${mode}: no order lost`, `${lost} lost`);
  report.expect(doubled === 0, `${mode}: no effect doubled`, `${doubled} doubled`);
  const warnings = Object.values(stack.services).flatMap((service) =>
    service.logs.filter((l) => l.level === "warn" || l.level === "error")
      .map((l) => `${service.name} ${l.level} ${l.msg}`)
  );
  report.step(`${mode}: warnings and errors logged by the services: ${tally(warnings)}`);
  const restarts = records.filter((r) => r.healed !== "by itself").length;
  return `${mode}: ${accepted.length} orders through ${records.length} network faults, ` +
    `${lost} lost, ${doubled} doubled, worst stall ${inSeconds(Math.max(0, ...worst))} s, ` +
    `${restarts ? `${restarts} healed by an operator's restart` : "every one healed by itself"}`;
}

/** One fault: the rules in, held while watching for a recovery, out, and the cluster made whole. */
async function runFault(
  cluster: Cluster,
  chain: RuleChain,
  stack: Stack,
  report: Report,
  options: {
    mode: PartitionMode;
    fault: PartitionFault;
    holdMs: number;
    accepted: StreamedOrder[];
  },
): Promise<FaultRecord> {
  const { mode, fault, holdMs, accepted } = options;
  const vhost = stack.vhost.name;
  const placement = await servicePlacement(cluster, vhost);
  const target = cluster.node(mostCommon(Object.values(placement)));
  const on = Object.entries(placement).filter(([, node]) => node === target.name)
    .map(([service]) => service);
  const others = cluster.nodes.filter((node) => node !== target);
  const index = (node: RabbitMqNode): number => cluster.nodes.indexOf(node);
  const ruleNodes = cluster.nodes.map((node) => ({ uid: node.user!.uid, amqpPort: node.amqpPort }));
  let rules: FaultRules;
  let what: string;
  if (fault === "isolate-node") {
    rules = isolate(ruleNodes, index(target));
    what = `${label(cluster, target)} isolated from ${others.map((n) => label(cluster, n))}`;
  } else if (fault === "silence-amqp") {
    rules = silenceAmqp(ruleNodes, index(target));
    what = `${label(cluster, target)}'s AMQP answers dropped`;
  } else {
    const leader = await cluster.leaderOf(Queue.orderPlaced, vhost).catch(() => undefined);
    const to = others.find((node) => node.name === leader) ?? others[0];
    rules = cutOneWay(ruleNodes, index(target), index(to));
    what = `${label(cluster, target)} → ${label(cluster, to)} cut one way`;
  }
  what += ` (services on it: ${on.join(", ")})`;
  const atMs = Date.now();
  await chain.apply(rules);
  report.step(`${mode}: fault: ${what}, for ${holdMs / 1000} s`);
  const holding = sleep(holdMs);
  await reportRecovery(stack, report, { accepted, atMs, deadlineMs: holdMs });
  await holding;
  report.step(`${mode}: while cut: ${await clusterView(cluster)}`);
  await chain.heal();
  const healMs = Date.now();
  report.step(`${mode}: rules removed; waiting for the cluster to be whole again`);
  let healed = "by itself";
  if (!(await waitWhole(cluster, HEAL_DEADLINE_MS))) {
    const stuck = await nodeToRestart(cluster, target);
    report.step(
      `${mode}: still split ${HEAL_DEADLINE_MS / 1000} s after the heal ` +
        `(${await clusterView(cluster)}); restarting ${
          label(cluster, stuck)
        }, as an operator would`,
    );
    const how = await restartAsOperator(cluster, stuck);
    report.step(`${mode}: ${label(cluster, stuck)} ${how}`);
    healed = (await waitWhole(cluster, HEAL_DEADLINE_MS))
      ? `after ${label(cluster, stuck)} was ${how}`
      : "no";
  }
  await waitReplicated(cluster, vhost, 500).catch(() => {});
  const endMs = Date.now();
  const deadLettered = await deadLetterTotal(cluster, vhost);
  report.step(
    `${mode}: whole again (${healed}) ${round((endMs - healMs) / 1000, 1)} s after the heal; ` +
      `${deadLettered} dead-lettered; ${await placementLine(cluster, vhost)}`,
  );
  return { fault, what, atMs, healMs, endMs, healed, deadLettered };
}

/**
 * The node an operator restarts to end a partition: one that does not answer (a minute after the
 * heal, a node that paused itself should be back: it is stuck in its restart), else the one that
 * sees the fewest nodes running (the minority side, whose view the majority's replaces), or
 * `fallback` where all see the same.
 */
async function nodeToRestart(cluster: Cluster, fallback: RabbitMqNode): Promise<RabbitMqNode> {
  const seen = await Promise.all(cluster.nodes.map(async (node) => {
    try {
      const nodes = await cluster.api(node)("GET", "/api/nodes") as NodeInfo[];
      return { node, running: nodes.filter((n) => n.running).length };
    } catch {
      return { node, running: -1 };
    }
  }));
  const fewest = Math.min(...seen.map((s) => s.running));
  return seen.find((s) => s.node === fallback && s.running === fewest)?.node ??
    seen.find((s) => s.running === fewest)!.node;
}

/**
 * Restarts `node` as an operator would: `rabbitmqctl stop` and start, or where the node does not
 * stop when asked (a boot stuck after the partition), SIGKILL and start. Returns what it took.
 */
async function restartAsOperator(cluster: Cluster, node: RabbitMqNode): Promise<string> {
  try {
    await cluster.restart(node, { timeoutMs: OPERATOR_STOP_MS });
    return "restarted";
  } catch {
    await cluster.kill(node);
    await cluster.start(node);
    return "SIGKILLed and started, as it did not stop when asked";
  }
}

/**
 * Waits up to `deadlineMs` until an order placed after the fault is CONFIRMED and reports
 * roughly when; the exact figure comes from the orders' `updated_at` at the end.
 */
async function reportRecovery(
  stack: Stack,
  report: Report,
  fault: { accepted: StreamedOrder[]; atMs: number; deadlineMs: number },
): Promise<void> {
  const { accepted, atMs, deadlineMs } = fault;
  const settled = new Set<string>();
  try {
    await waitFor("an order placed after the fault to be confirmed", async () => {
      const after = accepted.filter((a) => a.sentAtMs >= atMs && !settled.has(a.orderId!))
        .slice(0, 20);
      for (const order of after) {
        const status = await orderStatus(stack, order.orderId!);
        if (status === "CONFIRMED") return true;
        if (status !== "PENDING") settled.add(order.orderId!);
      }
      return false;
    }, { timeoutMs: deadlineMs, intervalMs: 200 });
    report.step(`an order placed after the fault confirmed (~${Date.now() - atMs} ms)`);
  } catch {
    report.step(`no order placed after the fault confirmed while it lasted`);
  }
}

/**
 * True once every node answers on its management API, each sees all three running, and none
 * reports a partition; false when `timeoutMs` passes first.
 */
async function waitWhole(cluster: Cluster, timeoutMs: number): Promise<boolean> {
  try {
    await waitFor("the cluster to be whole", async () => {
      for (const node of cluster.nodes) {
        const seen = await cluster.api(node)("GET", "/api/nodes") as NodeInfo[];
        const whole = seen.length === cluster.nodes.length &&
          seen.every((n) => n.running && (n.partitions ?? []).length === 0);
        if (!whole) return false;
      }
      return true;
    }, { timeoutMs, intervalMs: 1_000 });
    return true;
  } catch {
    return false;
  }
}

interface NodeInfo {
  name: string;
  running: boolean;
  partitions?: string[];
}

/** What each node's management API says of the cluster, in one line: for the report. */
async function clusterView(cluster: Cluster): Promise<string> {
  const views = await Promise.all(cluster.nodes.map(async (node) => {
    try {
      const seen = await cluster.api(node)("GET", "/api/nodes") as NodeInfo[];
      const running = seen.filter((n) => n.running).map((n) =>
        label(cluster, cluster.node(n.name))
      );
      const split = seen.flatMap((n) => n.partitions ?? []).map((p) =>
        label(cluster, cluster.node(p))
      );
      return `${label(cluster, node)} sees ${running.join("+") || "none"} running` +
        (split.length ? `, partitioned from ${[...new Set(split)].join("+")}` : "");
    } catch {
      return `${label(cluster, node)} does not answer (paused or cut)`;
    }
  }));
  return views.join("; ");
}

/** The messages in every DLQ of `vhost`, from the first node that answers. */
async function deadLetterTotal(cluster: Cluster, vhost: string): Promise<number> {
  let total = 0;
  for (const queue of QUEUES.map(deadLetterQueue)) {
    const info = await cluster.api()(
      "GET",
      `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`,
    ) as { messages?: number };
    total += info.messages ?? 0;
  }
  return total;
}

/** The decision timeout the services run with (their default): no order should come near it. */
const DECISION_TIMEOUT_MS = 120_000;

/**
 * Waits (with a deadline) until every accepted order has settled, then checks them as
 * `test:cluster` does: each CONFIRMED or REJECTED with exactly one reservation, stock conserved
 * and held only by CONFIRMED orders, each student told once and truly.
 */
async function checkOrders(
  stack: Stack,
  report: Report,
  mode: PartitionMode,
  accepted: StreamedOrder[],
): Promise<OrderEffects[]> {
  await waitReady(stack, 60_000);
  const orderIds = accepted.map((a) => a.orderId!);
  await waitFor("every accepted order to settle", async () => {
    const effects = await countEffects(stack, orderIds);
    return effects.every((e) => hasSettled(toSettledOrder(e)));
  }, { timeoutMs: 90_000, intervalMs: 500 }).catch(() => {});
  const effects = await countEffects(stack, orderIds);
  report.expect(
    effects.every((e) =>
      (e.status === "CONFIRMED" || e.status === "REJECTED") && e.reservations === 1
    ),
    `${mode}: each accepted order CONFIRMED or REJECTED with 1 reservation`,
    tally(effects.map((e) => `${e.status}/${e.reservations} reservation`)),
  );
  checkLifecycle(report, effects.map(toSettledOrder), {
    stock: { initial: STREAM_STOCK, onHand: await getStock(stack) },
    decisionTimeoutMs: DECISION_TIMEOUT_MS,
    expiryLateMs: 5_000,
  });
  return effects;
}

/** The figures, one a line, then the PASS/FAIL line, as the other scenarios print them. */
function formatFigures(result: ScenarioResult): string {
  const width = Math.max(...Object.keys(result.figures).map((key) => key.length));
  return [
    "figures:",
    ...Object.entries(result.figures).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    formatResult(result),
  ].join("\n");
}

/** The command line: the scenario's own `--mode`, `--fault` and `--hold` besides the usual. */
async function main(): Promise<void> {
  const json = Deno.args.includes("--json");
  const print = (result: ScenarioResult): void =>
    console.log(json ? JSON.stringify(result) : formatFigures(result));
  let options: PartitionScenarioOptions;
  try {
    const { values, positive, oneOf } = readCommandLine(Deno.args, {
      tool: "test:partition",
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        mode: { type: "string" },
        fault: { type: "string" },
        hold: { type: "string" },
        rate: { type: "string" },
      },
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    const mode = oneOf("mode", PARTITION_MODES);
    const fault = oneOf("fault", PARTITION_FAULTS);
    options = {
      modes: mode ? [mode] : PARTITION_MODES,
      faults: fault ? [fault] : PARTITION_FAULTS,
      holdSeconds: positive("hold", 30),
      rate: positive("rate", 10),
      log: json ? () => {} : console.log,
    };
  } catch (error) {
    print({ name: "test:partition", pass: false, reason: (error as Error).message, figures: {} });
    if (!json) console.log(`\n${USAGE}`);
    Deno.exit(1);
  }
  let result: ScenarioResult;
  try {
    result = await runPartition(options);
  } catch (error) {
    if (error instanceof RabbitMqNotInstalledError || error instanceof NetworkRulesRefusedError) {
      console.log(
        json
          ? JSON.stringify({ name: "test:partition", skipped: true, reason: error.message })
          : `SKIP test:partition: ${error.message}`,
      );
      Deno.exit(0);
    }
    result = { name: "test:partition", pass: false, reason: String(error), figures: {} };
  }
  // The signal handlers are removing the rules and stopping the nodes, and exit 130 when done.
  if (isInterrupted()) await new Promise(() => {});
  print(result);
  Deno.exit(result.pass ? 0 : 1);
}

if (import.meta.main) await main();
