/**
 * `deno task test:network`: what a slow or lossy network costs. The services reach the broker
 * through a TCP proxy of this scenario's, and (where PostgreSQL answers) their database of its own
 * through another; one setting after another is put on one of those links: latency and jitter by
 * the proxy, which holds every chunk each way (`tcp_proxy.ts`), and packet loss by `iptables`
 * dropping a share of the packets to and from the proxy's port at random (`network_rules.ts`),
 * so that TCP really resends them. This kernel has no `sch_netem`, hence not `tc netem`.
 *
 * For each setting a steady stream of orders runs for a while, the setting holds until every
 * order of that window has settled, and then it is removed. Per setting it reports the orders
 * accepted and unanswered, orders decided per second, p50 and p99 from the POST to the decision,
 * p99 of the POST's answer, orders lost and doubled, what was dead-lettered and the broker
 * reconnects, as one table. PASS when no accepted order is lost or doubled, nothing is
 * dead-lettered, every accepted order settled and stock is conserved; the latencies are reported,
 * never judged.
 *
 * Without PostgreSQL the services run on SQLite and the database settings are skipped; where the
 * machine refuses firewall rules, the loss settings are: each said in one line. Rules are removed
 * and proxies closed at the end, on an error and on Ctrl-C.
 * @module
 */
import { waitFor } from "../lib/async.ts";
import type { NetworkLink } from "../lib/command_line.ts";
import { percentiles } from "../lib/percentiles.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { deadLetterDepths, expectDeadLettersEmpty } from "../lib/broker_probes.ts";
import {
  countEffects,
  isDoubled,
  isLost,
  notificationSent,
  type OrderEffects,
} from "../lib/effects.ts";
import { round } from "../lib/format.ts";
import { getStock, waitReady } from "../lib/http_probes.ts";
import { dropShare, openRuleChain, type RuleChain, whyNoRules } from "../lib/network_rules.ts";
import { checkLifecycle, hasSettled, toSettledOrder } from "../lib/order_lifecycle_checks.ts";
import { STREAM_STOCK, STREAM_STOCK_ENV, streamOrders } from "../lib/order_stream.ts";
import { createProxiedDatabase, type ProxiedDatabase } from "../lib/proxied_database.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { SERVICES } from "../lib/service_process.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { type Latency, startTcpProxy, type TcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import type { Tap } from "../ops/broker_tools.ts";
import { EventType } from "../../shared/topology.ts";
import { postgresUnavailable } from "../../shared/testing/stores.ts";

/** One condition of one link, or of none (the baseline). */
export interface NetworkSetting {
  /** The prefix of its figures, e.g. `broker_200ms_jitter_50ms`. */
  key: string;
  /** How the table names it, e.g. `broker 200 ms ± 50 ms`. */
  label: string;
  /** Undefined for the baseline. */
  link?: NetworkLink;
  /** Added to each direction by the link's proxy. */
  latency?: Latency;
  /** The share of packets dropped each way, 0 to 1. */
  loss?: number;
}

/** A setting on `link`: latency (with jitter) and loss, in milliseconds and percent. */
function onLink(
  link: NetworkLink,
  fault: { ms?: number; jitterMs?: number; lossPercent?: number },
): NetworkSetting {
  const { ms, jitterMs, lossPercent } = fault;
  const keys: string[] = [link];
  const labels: string[] = [];
  if (ms !== undefined) {
    keys.push(`${ms}ms`, ...(jitterMs ? [`jitter_${jitterMs}ms`] : []));
    labels.push(`${ms} ms${jitterMs ? ` ± ${jitterMs} ms` : ""}`);
  }
  if (lossPercent !== undefined) {
    keys.push(`loss_${lossPercent}pct`);
    labels.push(`${lossPercent} % loss`);
  }
  return {
    key: keys.join("_"),
    label: `${link} ${labels.join(", ")}`,
    link,
    latency: ms === undefined ? undefined : { ms, jitterMs },
    loss: lossPercent === undefined ? undefined : lossPercent / 100,
  };
}

/** Every setting, in the order a full run goes through them. */
export const NETWORK_SETTINGS: readonly NetworkSetting[] = [
  { key: "baseline", label: "baseline" },
  onLink("broker", { ms: 50 }),
  onLink("broker", { ms: 200, jitterMs: 50 }),
  onLink("broker", { lossPercent: 1 }),
  onLink("broker", { lossPercent: 5 }),
  onLink("broker", { ms: 100, jitterMs: 20, lossPercent: 2 }),
  onLink("database", { ms: 50 }),
  onLink("database", { ms: 200, jitterMs: 50 }),
  onLink("database", { lossPercent: 1 }),
  onLink("database", { lossPercent: 5 }),
];

/** The baseline and the settings of `link` alone, in the order a full run goes through them. */
export function settingsOfLink(link: NetworkLink): readonly NetworkSetting[] {
  return NETWORK_SETTINGS.filter((setting) => setting.link === undefined || setting.link === link);
}

/** Options for {@linkcode runNetwork}. */
export interface NetworkOptions extends ScenarioOptions {
  /** How long orders stream in under each setting, in seconds. @default {10} */
  seconds?: number;
  /** Orders per second. @default {20} */
  rate?: number;
  /** The settings, in turn. @default {NETWORK_SETTINGS} */
  settings?: readonly NetworkSetting[];
}

const USAGE =
  `Usage: deno task test:network [--seconds S] [--rate R] [--link broker|database] [--json]

  --seconds S   how long orders stream in under each setting (default 10)
  --rate R      orders per second (default 20)
  --link L      only the baseline and the settings on link L, broker or database (default both)
  --json        print one JSON object instead of the steps

Puts latency, jitter and packet loss on the services' links to the broker and to PostgreSQL in
turn (${NETWORK_SETTINGS.map((s) => s.label).join("; ")}) and prints what each costs as a table.
Loss needs root and iptables, the database settings PostgreSQL (TEST_DATABASE_URL, default the
local server); without them those settings are skipped, each said in one line.`;

/** The decision timeout the services run with (their default): no order should come near it. */
const DECISION_TIMEOUT_MS = 120_000;

/**
 * How long the orders of one setting's window may take to settle under it, in milliseconds: a
 * slow database link makes a backlog that takes minutes to drain.
 */
const SETTLE_DEADLINE_MS = 600_000;

/** The proxies between the services and what they depend on. */
interface Proxies {
  broker: TcpProxy;
  /** Only where PostgreSQL answers. */
  database?: TcpProxy;
}

/** What one setting cost. */
interface SettingFigures {
  setting: NetworkSetting;
  accepted: number;
  unanswered: number;
  decidedPerS: number;
  /** From the POST to the decision (the order's `updated_at`), in milliseconds. */
  decisionP50Ms?: number;
  decisionP99Ms?: number;
  /** From the POST to its 202, in milliseconds. */
  answerP99Ms?: number;
  /** Accepted and lost, as `isLost()` says; `expired` are those the decision timeout ended. */
  lost: number;
  expired: number;
  doubled: number;
  deadLettered: number;
  reconnects: number;
}

/** Runs the network scenario on a stack of its own. */
export function runNetwork(options: NetworkOptions = {}): Promise<ScenarioResult> {
  const { seconds = 10, rate = 20, settings = NETWORK_SETTINGS } = options;
  return runScenario("test:network", options, async (report) => {
    const noRules = settings.some((s) => s.loss) ? await whyNoRules() : undefined;
    if (noRules) report.step(`loss settings skipped: this machine refuses the rules (${noRules})`);
    const noDatabase = await postgresUnavailable();
    if (noDatabase) report.step(`database settings skipped, on SQLite: ${noDatabase}`);
    const runnable = settings.filter((s) =>
      !(s.loss && noRules) && !(s.link === "database" && noDatabase)
    );
    const proxies: Proxies = { broker: startTcpProxy(brokerTarget()) };
    let chain: RuleChain | undefined;
    let database: ProxiedDatabase | undefined;
    try {
      const env: Record<string, string> = { INVENTORY_STOCK: STREAM_STOCK_ENV };
      if (!noDatabase) {
        database = await createProxiedDatabase();
        proxies.database = database.proxy;
        env.DATABASE_URL = database.url;
      }
      if (runnable.some((s) => s.loss)) chain = await openRuleChain([]);
      await withStack(
        { servicesAmqpUrl: (url) => viaProxy(url, proxies.broker), env },
        (stack) =>
          underSettings(stack, report, { seconds, rate, settings: runnable, proxies, chain }),
      );
    } finally {
      proxies.broker.close();
      await chain?.close();
      await database?.close();
    }
  });
}

interface SettingsContext {
  seconds: number;
  rate: number;
  settings: readonly NetworkSetting[];
  proxies: Proxies;
  chain?: RuleChain;
}

/** Set once the stack is up: a tap on the decisions, opened before the first order. */
type StackContext = SettingsContext & { decisionTap: Tap };

async function underSettings(
  stack: Stack,
  report: Report,
  context: SettingsContext,
): Promise<void> {
  const { seconds, rate, settings, proxies } = context;
  report.step(
    `stack up in vhost ${stack.vhost.name}, on ${proxies.database ? "PostgreSQL" : "SQLite"}; ` +
      `${settings.length} settings, ${rate} orders/s for ${seconds} s each`,
  );
  // The stack's own connection bypasses the proxies: the tap sees a decision as soon as it is out.
  // OrderCancelled too: an order the services could not decide in time expires.
  const decisionTap = await stack.tools.tap([
    EventType.OrderConfirmed,
    EventType.OrderRejected,
    EventType.OrderCancelled,
  ]);
  const rows: SettingFigures[] = [];
  const orderIds: string[] = [];
  for (const setting of settings) {
    // A reconnect or pause the previous setting caused ends before the next one is measured.
    await waitReady(stack, 60_000);
    const { figures, ids } = await underSetting(stack, report, setting, {
      ...context,
      decisionTap,
    });
    rows.push(figures);
    orderIds.push(...ids);
    reportFigures(report, figures);
  }
  report.step("what each setting cost (latencies from the POST, in ms):");
  for (const line of formatTable(rows)) report.step(line);

  await waitReady(stack, 60_000);
  const effects = await settledEffects(stack, orderIds);
  const unsettled = effects.filter((e) => !hasSettled(toSettledOrder(e)));
  report.expect(
    unsettled.length === 0,
    "every accepted order settled (decided, its reservation and notification agreeing)",
    `${unsettled.length} not, e.g. ${JSON.stringify(unsettled.slice(0, 2))}`,
  );
  checkLifecycle(report, effects.map(toSettledOrder), {
    stock: { initial: STREAM_STOCK, onHand: await getStock(stack) },
    decisionTimeoutMs: DECISION_TIMEOUT_MS,
    expiryLateMs: 5_000,
  });
  const lost = effects.filter(isLost).length;
  const doubled = effects.filter(isDoubled).length;
  report.expect(lost === 0, "no accepted order lost", `${lost} lost`);
  report.expect(doubled === 0, "no effect doubled", `${doubled} doubled`);
  await expectDeadLettersEmpty(stack, report);
  report.figure("orders_accepted", orderIds.length);
  report.figure("lost", lost);
  report.figure("doubled", doubled);
  const worst = rows.reduce((a, b) => (b.decisionP99Ms ?? 0) > (a.decisionP99Ms ?? 0) ? b : a);
  report.summary(
    `${orderIds.length} orders through ${rows.length} network settings, ${lost} lost, ` +
      `${doubled} doubled, nothing dead-lettered; the worst p99 to a decision ` +
      `${worst.decisionP99Ms ?? "none"} ms under ${worst.setting.label}`,
  );
}

/** One setting: applied, orders streamed, held until they settled, removed, and its figures. */
async function underSetting(
  stack: Stack,
  report: Report,
  setting: NetworkSetting,
  context: StackContext,
): Promise<{ figures: SettingFigures; ids: string[] }> {
  const { seconds, rate, proxies, chain, decisionTap } = context;
  const reconnectsBefore = countReconnects(stack);
  const deadLetteredBefore = await deadLetterTotal(stack);
  const proxy = setting.link ? proxies[setting.link]! : undefined;
  proxy?.delay(setting.latency);
  if (setting.loss) await chain!.apply(dropShare(proxy!.port, setting.loss));
  report.step(`${setting.label}: streaming ${rate} orders/s for ${seconds} s`);
  const sent: Array<{ orderId: string; sentAtMs: number; answerMs: number }> = [];
  let unanswered = 0;
  let settleS: number;
  try {
    await streamOrders(stack, { seconds, rate, label: `network-${setting.key}` }, (result) => {
      if (!result.orderId) unanswered++;
      else {
        const { orderId, sentAtMs } = result;
        sent.push({ orderId, sentAtMs, answerMs: Date.now() - sentAtMs });
      }
    });
    const streamEnded = performance.now();
    await waitDecidedAndTold(stack, decisionTap, sent.map((s) => s.orderId));
    settleS = round((performance.now() - streamEnded) / 1000, 1);
  } finally {
    proxy?.delay(undefined);
    await chain?.heal();
  }
  const effects = await settledEffects(stack, sent.map((s) => s.orderId));
  const byId = new Map(effects.map((e) => [e.order_id, e]));
  const decisions = sent.map((s) => ({ ...s, decidedAtMs: decidedAtMs(byId.get(s.orderId)) }))
    .filter((s): s is typeof s & { decidedAtMs: number } => s.decidedAtMs !== undefined);
  const toDecision = decisions.map((d) => d.decidedAtMs - d.sentAtMs);
  const decision = toDecision.length ? percentiles(toDecision) : undefined;
  const spanMs = Math.max(...decisions.map((d) => d.decidedAtMs)) -
    Math.min(...sent.map((s) => s.sentAtMs));
  const figures: SettingFigures = {
    setting,
    accepted: sent.length,
    unanswered,
    decidedPerS: decisions.length ? round(decisions.length / (spanMs / 1000), 1) : 0,
    decisionP50Ms: decision?.p50,
    decisionP99Ms: decision?.p99,
    answerP99Ms: sent.length ? percentiles(sent.map((s) => s.answerMs)).p99 : undefined,
    lost: effects.filter(isLost).length,
    expired: effects.filter((e) => e.status === "EXPIRED").length,
    doubled: effects.filter(isDoubled).length,
    deadLettered: (await deadLetterTotal(stack)) - deadLetteredBefore,
    reconnects: countReconnects(stack) - reconnectsBefore,
  };
  report.step(
    `${setting.label}: removed; ${sent.length} accepted, ${decisions.length} decided, ` +
      `settled ${settleS} s after the stream ended`,
  );
  return { figures, ids: sent.map((s) => s.orderId) };
}

/**
 * Waits until each of `orderIds` has a decision (or its expiry) on the tap and a notification sent in
 * notification's log, or until {@linkcode SETTLE_DEADLINE_MS} passes (the checks at the end say
 * which did not). It asks no service: a poll through their databases would compete with the orders
 * for the slow link, and the cost measured would be partly the harness's.
 */
async function waitDecidedAndTold(stack: Stack, decisions: Tap, orderIds: string[]): Promise<void> {
  await waitFor("the window's orders to be decided and their students told", () => {
    const decided = new Set(decisions.messages.map((m) => m.correlationId));
    const told = new Set(
      (stack.services.notification?.logs ?? []).map((line) => notificationSent(line)?.orderId),
    );
    return orderIds.every((id) => decided.has(id) && told.has(id));
  }, { timeoutMs: SETTLE_DEADLINE_MS, intervalMs: 100 }).catch(() => {});
}

/** The effects of `orderIds` once all have settled, or as they are after a short deadline. */
async function settledEffects(stack: Stack, orderIds: string[]): Promise<OrderEffects[]> {
  return await waitFor("the window's orders to settle", async () => {
    const effects = await countEffects(stack, orderIds);
    return effects.every((e) => hasSettled(toSettledOrder(e))) && effects;
  }, { timeoutMs: 15_000, intervalMs: 250 }).catch(() => countEffects(stack, orderIds));
}

/** When the order service decided the order (its `updated_at`), or undefined if it has not. */
function decidedAtMs(effects: OrderEffects | undefined): number | undefined {
  const decided = effects?.status === "CONFIRMED" || effects?.status === "REJECTED";
  return decided && effects.updatedAt ? Date.parse(effects.updatedAt) : undefined;
}

/** The "reconnected to broker" lines every service has logged so far. */
function countReconnects(stack: Stack): number {
  return SERVICES.reduce(
    (sum, name) =>
      sum + (stack.services[name]?.logs.filter((l) => l.msg === "reconnected to broker").length ??
        0),
    0,
  );
}

async function deadLetterTotal(stack: Stack): Promise<number> {
  return Object.values(await deadLetterDepths(stack)).reduce((sum, depth) => sum + depth, 0);
}

/** Records one setting's figures, each as `<key>_<figure>`, and fails on what must not happen. */
function reportFigures(report: Report, figures: SettingFigures): void {
  const { setting } = figures;
  const values: Record<string, number | string> = {
    accepted: figures.accepted,
    unanswered: figures.unanswered,
    decided_per_s: figures.decidedPerS,
    p50_ms: figures.decisionP50Ms ?? "none",
    p99_ms: figures.decisionP99Ms ?? "none",
    post_p99_ms: figures.answerP99Ms ?? "none",
    lost: figures.lost,
    expired: figures.expired,
    doubled: figures.doubled,
    dead_lettered: figures.deadLettered,
    reconnects: figures.reconnects,
  };
  for (const [name, value] of Object.entries(values)) {
    report.figure(`${setting.key}_${name}`, value);
  }
  report.expect(
    figures.deadLettered === 0,
    `nothing dead-lettered under ${setting.label}`,
    `${figures.deadLettered} messages in the DLQs`,
  );
}

/** The table of what each setting cost, a header and one line per setting. */
function formatTable(rows: readonly SettingFigures[]): string[] {
  const header = [
    "setting",
    "accepted",
    "no answer",
    "decided/s",
    "p50",
    "p99",
    "POST p99",
    "lost",
    "expired",
    "doubled",
    "DLQ",
    "reconnects",
  ];
  const cells = rows.map((r) => [
    r.setting.label,
    ...[
      r.accepted,
      r.unanswered,
      r.decidedPerS,
      r.decisionP50Ms ?? "-",
      r.decisionP99Ms ?? "-",
      r.answerP99Ms ?? "-",
      r.lost,
      r.expired,
      r.doubled,
      r.deadLettered,
      r.reconnects,
    ].map(String),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  return [header, ...cells].map((line) =>
    line.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ")
  );
}

if (import.meta.main) {
  await runFromCommandLine(
    "test:network",
    (args, log) =>
      runNetwork({
        seconds: args.seconds,
        rate: args.rate,
        settings: args.link && settingsOfLink(args.link),
        log,
      }),
    { usage: USAGE, accepts: ["seconds", "rate", "link"] },
  );
}
