/**
 * `deno task test:chaos`: a steady stream of orders while every kind of fault happens at random
 * moments: each service SIGKILLed and restarted, connections force-closed by the broker, transient
 * handler faults (`FAULT_TRANSIENT_RATE=0.2`), a little injected poison, one stretch with
 * inventory stopped past the decision timeout (`ORDER_DECISION_TIMEOUT=3s`), so that orders expire
 * and their `OrderPlaced` reaches inventory late, and with `--broker-outage` the services cut off
 * the broker for some seconds by a TCP proxy this scenario controls (the real broker is never
 * stopped), and with `--db-outage` the services run on PostgreSQL through another such proxy and
 * are cut off their database for longer than all retry delays together. A client that gets no
 * answer (the order service died under its request, or is down) sends the order again with its
 * `Idempotency-Key`; one in five orders is cancelled soon after its 202. PASS when every order is
 * accepted, no order is left PENDING (each is CONFIRMED, REJECTED, CANCELLED or EXPIRED, an expired
 * one on time), each has one reservation and one outcome event, stock is conserved and held only by
 * CONFIRMED orders, the student heard of each status at most once and last of the final one, every
 * notification recorded was sent at most once (a SIGKILL after the commit can lose the send, never
 * double it), and the DLQs hold the injected poison and nothing else.
 * @module
 */
import { sleep, waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import {
  closeServiceConnections,
  deadLetterDepths,
  peekQueue,
  publishOrderPlaced,
} from "../lib/broker_probes.ts";
import { countEffects, notificationSent } from "../lib/effects.ts";
import { round, tally } from "../lib/format.ts";
import { getStock, waitReady } from "../lib/http_probes.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { Report, ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { type RunningService, type ServiceName, SERVICES } from "../lib/service_process.ts";
import { type Stack, withStack } from "../lib/stack.ts";
import { type CancelAnswer, cancelUntilAnswered } from "../lib/until_answered.ts";
import { startTcpProxy, type TcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import { createProxiedDatabase, type ProxiedDatabase } from "../lib/proxied_database.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../lib/webhook_receiver.ts";
import { expectDelivered } from "../lib/webhook_checks.ts";
import {
  checkCancelAnswers,
  checkLifecycle,
  hasSettled,
  toSettledOrder,
} from "../lib/order_lifecycle_checks.ts";
import {
  ANSWER_DEADLINE_MS,
  STREAM_STOCK,
  STREAM_STOCK_ENV,
  streamOrders,
} from "../lib/order_stream.ts";
import { deadLetterQueue, EventType, Queue } from "../../shared/topology.ts";
import { PAUSED_MSG, RESUMED_MSG } from "../../shared/outage.ts";

/** Options for {@linkcode runChaos}. */
export interface ChaosOptions extends ScenarioOptions {
  /** How long orders stream in while faults happen, in seconds. @default {30} */
  seconds?: number;
  /** Orders per second. @default {20} */
  rate?: number;
  /** Cut the services off the broker for a few seconds, twice. @default {false} */
  brokerOutage?: boolean;
  /**
   * Run on PostgreSQL (a database of its own on the server of `TEST_DATABASE_URL`) and cut the
   * services off it for {@linkcode DATABASE_OUTAGE_MS}, twice. @default {false}
   */
  databaseOutage?: boolean;
}

const USAGE =
  `Usage: deno task test:chaos [--seconds S] [--rate R] [--broker-outage] [--db-outage] [--json]

  --seconds S        how long orders stream in while faults happen (default 30)
  --rate R           orders per second (default 20)
  --broker-outage    also cut the services off the broker for a few seconds, twice
  --db-outage        run on PostgreSQL (TEST_DATABASE_URL, default the local server) and also cut
                     the services off it for longer than all retry delays together, twice
  --json             print one JSON object instead of the steps`;

/** Poison injected on purpose: exactly these may sit in a DLQ at the end. */
const POISON = ["not json", "[]", '{"invalid":"json","no":"order field"}'];

/** ORDER_DECISION_TIMEOUT for the services: short, so that orders expire during the run. */
const DECISION_TIMEOUT_MS = 3000;

/** How long inventory stays stopped in its outage: past the decision timeout. */
const INVENTORY_OUTAGE_MS = DECISION_TIMEOUT_MS + 2000;

/** The share of accepted orders the client cancels, at a random moment soon after the 202. */
const CANCEL_SHARE = 0.2;

/** Enough retries that a 0.2 fault rate practically never exhausts them (0.2^9 per message). */
const RETRY_DELAYS_MS = [100, 200, 300, 500, 500, 1000, 1000, 1000];

/**
 * Longer than all retry delays together (4.6 s): a message that spent a retry on each failure
 * during the outage would reach its `.dlq`.
 */
const DATABASE_OUTAGE_MS = RETRY_DELAYS_MS.reduce((sum, ms) => sum + ms) + 1500;

/** One fault and when it happened, for the timeline. */
interface Fault {
  at_s: number;
  fault: string;
}

/**
 * What can go wrong: a service SIGKILLed, or one of the other faults. `inventory-outage` stops
 * inventory for longer than the decision timeout, so that orders expire and their OrderPlaced
 * comes to inventory late, before or after the OrderCancelled.
 */
type FaultKind =
  | ServiceName
  | "force-close"
  | "poison"
  | "outage"
  | "inventory-outage"
  | "database outage";

/** The proxies between the services and what they depend on. */
interface Proxies {
  broker: TcpProxy;
  /** Only with `databaseOutage`. */
  database?: TcpProxy;
}

/** Runs the chaos scenario on a stack of its own. */
export function runChaos(options: ChaosOptions = {}): Promise<ScenarioResult> {
  const { seconds = 30, rate = 20, brokerOutage = false, databaseOutage = false } = options;
  return runScenario("test:chaos", options, async (report) => {
    const proxies: Proxies = {
      broker: startTcpProxy(brokerTarget()),
    };
    let database: ProxiedDatabase | undefined;
    const receiver = startWebhookReceiver();
    try {
      const env: Record<string, string> = {
        RETRY_DELAYS: RETRY_DELAYS_MS.map((ms) => `${ms}ms`).join(","),
        ORDER_DECISION_TIMEOUT: `${DECISION_TIMEOUT_MS}ms`,
        INVENTORY_STOCK: STREAM_STOCK_ENV,
      };
      if (databaseOutage) {
        database = await createProxiedDatabase();
        proxies.database = database.proxy;
        env.DATABASE_URL = database.url;
      }
      await withStack({
        servicesAmqpUrl: (url) => viaProxy(url, proxies.broker),
        env,
        serviceEnv: {
          inventory: { FAULT_TRANSIENT_RATE: "0.2" },
          notification: { FAULT_TRANSIENT_RATE: "0.2", ...receiver.env },
        },
      }, (stack) => chaos(stack, report, { seconds, rate, brokerOutage, proxies, receiver }));
    } finally {
      await receiver.close();
      proxies.broker.close();
      await database?.close();
    }
  });
}

async function chaos(
  stack: Stack,
  report: Report,
  options: {
    seconds: number;
    rate: number;
    brokerOutage: boolean;
    proxies: Proxies;
    receiver: WebhookReceiver;
  },
): Promise<void> {
  const { seconds, rate, brokerOutage, proxies, receiver } = options;
  // The stack's own connection bypasses the proxy, so the tap sees every event, outages included.
  const outcomes = await stack.tools.tap([EventType.InventoryReserved, EventType.InventoryFailed]);
  // Every process ever started, so that log lines survive the restarts.
  const processes: RunningService[] = Object.values(stack.services);
  const faults: Fault[] = [];
  const began = performance.now();
  const elapsed = () => round((performance.now() - began) / 1000, 1);
  function note(fault: string): void {
    faults.push({ at_s: elapsed(), fault });
    report.step(`fault: ${fault}`);
  }

  report.step(
    `streaming ${rate} orders/s for ${seconds} s in vhost ${stack.vhost.name}, with faults` +
      (brokerOutage ? " and broker outages" : "") +
      (proxies.database ? " and database outages, on PostgreSQL" : ""),
  );
  const accepted: Array<{ orderId: string; cookies: number }> = [];
  let resent = 0;
  let replayed = 0;
  let unanswered = 0;
  const cancels: Promise<CancelAnswer>[] = [];
  const stream = streamOrders(stack, { seconds, rate, label: "chaos" }, (result) => {
    if (result.orderId && Math.random() < CANCEL_SHARE) {
      cancels.push(cancelSoon(stack, result.orderId));
    }
    if (result.orderId) accepted.push({ orderId: result.orderId, cookies: result.cookies });
    else unanswered++;
    if (result.orderId && result.attempts > 1) resent++;
    if (result.replayed) replayed++;
  });

  const plan = planFaults(seconds, {
    brokerOutage,
    databaseOutage: proxies.database !== undefined,
  });
  const databaseOutagesEnded: number[] = [];
  for (const { atMs, fault } of plan) {
    const wait = began + atMs - performance.now();
    if (wait > 0) await sleep(wait);
    if (fault === "poison") {
      const body = POISON[faults.filter((f) => f.fault.startsWith("poison")).length];
      await publishOrderPlaced(stack, body, `poison-${faults.length}`);
      note(`poison ${JSON.stringify(body)}`);
    } else if (fault === "force-close") {
      const closed = await closeServiceConnections(stack, { timeoutMs: 6_000 });
      note(`force-closed ${closed} connections`);
    } else if (fault === "inventory-outage") {
      await stack.stop("inventory");
      note(`inventory stopped for ${INVENTORY_OUTAGE_MS / 1000} s`);
      await sleep(INVENTORY_OUTAGE_MS);
      processes.push(await stack.start("inventory"));
      note("inventory started again");
    } else if (fault === "outage") {
      proxies.broker.cut();
      note("broker outage begins");
      await sleep(3000);
      proxies.broker.restore();
      note("broker outage ends");
    } else if (fault === "database outage") {
      proxies.database!.cut();
      note("database outage begins");
      await sleep(DATABASE_OUTAGE_MS);
      proxies.database!.restore();
      databaseOutagesEnded.push(Date.now());
      note("database outage ends");
      // The next fault waits for the services to resume: two outages back to back are one.
      await waitReady(stack, 15_000);
    } else {
      await stack.stop(fault, "SIGKILL");
      note(`SIGKILL ${fault}`);
      await sleep(300 + Math.random() * 700);
      processes.push(await stack.start(fault));
      note(`restarted ${fault}`);
    }
  }
  await stream;
  report.step(
    `stream done: ${accepted.length} accepted (${resent} of them sent again after no answer, ` +
      `${replayed} of those committed before the answer was lost), ${unanswered} without a 202`,
  );
  report.expect(
    unanswered === 0,
    "every order accepted with 202, sent again with its Idempotency-Key while order was down",
    `${unanswered} orders without a 202 after ${ANSWER_DEADLINE_MS / 1000} s`,
  );

  await waitReady(stack, 30_000);
  await Promise.all(cancels);
  const settleBegan = performance.now();
  const orderIds = accepted.map((a) => a.orderId);
  const notificationLogs = () =>
    processes.filter((p) => p.name === "notification").flatMap((p) => p.logs);
  // Every order decided, every OrderPlaced and OrderCancelled handled, every student told: the
  // last notifications may trail the status by a retry or two.
  await waitFor("every accepted order to settle", async () => {
    const effects = await countEffects(stack, orderIds, { outcomes });
    return effects.every((e) => e.outcomes === 1 && hasSettled(toSettledOrder(e)));
  }, { timeoutMs: 60_000, intervalMs: 250 }).catch(() => {});
  report.figure("settle_s", round((performance.now() - settleBegan) / 1000, 1));

  const effects = await countEffects(stack, orderIds, { outcomes });
  const sent = sentKinds(notificationLogs());
  // A notification is the row the service records; its log line is the send. A SIGKILL between
  // the commit and the line's write loses the send, never doubles it: at most once, as promised.
  const bad = effects.filter((e) =>
    e.reservations !== 1 || e.outcomes !== 1 ||
    !inOrderOnce(sent.get(e.order_id) ?? [], e.notificationKinds)
  );
  report.expect(
    bad.length === 0,
    "each accepted order with 1 reservation, 1 outcome event, and each notification sent at most once, in the order recorded",
    bad.slice(0, 3).map((e) => JSON.stringify({ ...e, sent: sent.get(e.order_id) })).join(", "),
  );
  // Every notification recorded reaches the student's webhook, through every kill and outage.
  const recorded = new Set(
    effects.flatMap((e) => e.notificationKinds.map((kind) => `${e.order_id} ${kind}`)),
  );
  await expectDelivered(report, receiver, { recorded, timeoutMs: 60_000 });
  report.figure(
    "notifications_recorded_not_sent",
    effects.reduce(
      (n, e) => n + e.notificationKinds.length - (sent.get(e.order_id)?.length ?? 0),
      0,
    ),
  );
  const counts = checkLifecycle(
    report,
    effects.map(toSettledOrder),
    {
      stock: { initial: STREAM_STOCK, onHand: await getStock(stack) },
      decisionTimeoutMs: DECISION_TIMEOUT_MS,
      // An order due while its service was SIGKILLed expires when it is back, a second or two on;
      // one due while the order database was out, when the database is back.
      expiryLateMs: 5000 + (proxies.database ? DATABASE_OUTAGE_MS : 0),
    },
  );
  const cancelAnswers = await Promise.all(cancels);
  checkCancelAnswers(report, cancelAnswers);

  const parked = await peekQueue(stack, deadLetterQueue(Queue.orderPlaced));
  const { [deadLetterQueue(Queue.orderPlaced)]: _, ...others } = await deadLetterDepths(stack);
  const injected = faults.filter((f) => f.fault.startsWith("poison")).length;
  // Parking is at-least-once: a kill between a copy's confirm and the ack parks it again.
  const parkedIds = new Set(parked.map((m) => m.properties.message_id));
  report.figure("poison_parked_twice", parked.length - parkedIds.size);
  report.expect(
    parkedIds.size === injected &&
      parked.every((m) => m.properties.message_id?.startsWith("poison-")) &&
      Object.values(others).every((depth) => depth === 0),
    `the ${injected} injected poison messages in order-placed.dlq (each at least once) and nothing in any other DLQ`,
    `order-placed.dlq ${parked.length} (${
      tally(parked.map((m) => m.properties.message_id))
    }), others ${JSON.stringify(others)}`,
  );

  const logs: Array<Record<string, unknown>> = processes.flatMap((p) =>
    p.logs.map((line) => ({ ...line, service: p.name }))
  );
  const count = (name: ServiceName, msg: string) =>
    logs.filter((l) => l.service === name && l.msg === msg).length;
  report.figure("orders_accepted", accepted.length);
  report.figure("orders_sent_again", resent);
  report.figure("orders_replayed", replayed);
  for (const status of ["CONFIRMED", "REJECTED", "CANCELLED", "EXPIRED"]) {
    report.figure(status.toLowerCase(), counts.byStatus[status] ?? 0);
  }
  report.figure("cancellations_asked", cancelAnswers.length);
  report.figure("told_outcome_then_called_off", counts.outcomeThenCalledOff);
  report.figure("told_outcome_then_expired", counts.outcomeThenExpired);
  report.figure("stock_released", count("inventory", "released stock of a cancelled order"));
  report.figure(
    "cancellations_before_order",
    count("inventory", "remembered a cancellation before its order"),
  );
  report.figure(
    "late_outcomes_ignored",
    count("order", "skipped outcome of an order that is not pending here"),
  );
  for (const name of SERVICES) {
    report.figure(`kills_${name}`, faults.filter((f) => f.fault === `SIGKILL ${name}`).length);
  }
  report.figure("forced_closes", faults.filter((f) => f.fault.startsWith("force-closed")).length);
  report.figure("outages", faults.filter((f) => f.fault === "broker outage begins").length);
  report.figure("database_outages", databaseOutagesEnded.length);
  report.figure("pauses", logs.filter((l) => l.msg === PAUSED_MSG).length);
  // How long after the database came back each pause ended, in seconds: the largest of them.
  const resumedAfter = logs.filter((l) => l.msg === RESUMED_MSG).flatMap((l) => {
    const resumed = Date.parse(String(l.time));
    const ended = databaseOutagesEnded.filter((time) => time <= resumed).at(-1);
    return ended === undefined ? [] : [(resumed - ended) / 1000];
  });
  report.figure("resumed_after_s_max", round(Math.max(0, ...resumedAfter)));

  report.figure("retries", logs.filter((l) => l.msg === "handling failed, retrying later").length);
  report.figure("duplicates_skipped", logs.filter((l) => l.msg === "skipped duplicate").length);
  report.figure(
    "outcome_copies",
    effects.reduce((sum, e) => sum + e.outcomeCopies - e.outcomes, 0),
  );
  report.figure(
    "reconnects",
    SERVICES.reduce((sum, name) => sum + count(name, "reconnected to broker"), 0),
  );
  report.figure("timeline", faults.map((f) => `${f.at_s}s ${f.fault}`).join(" | "));
  report.summary(
    `${accepted.length} orders through ${faults.length} faults, ${cancelAnswers.length} ` +
      `cancellations asked: none PENDING (${tally(effects.map((e) => e.status))}), stock ` +
      "conserved and held only by CONFIRMED orders, each status told at most once and the last " +
      "notification saying the final one",
  );
}

/** True when `sent` holds each of its kinds once, each one `recorded`, in the recorded order. */
function inOrderOnce(sent: readonly string[], recorded: readonly string[]): boolean {
  let next = 0;
  for (const kind of sent) {
    next = recorded.indexOf(kind, next) + 1;
    if (next === 0) return false;
  }
  return true;
}

/** The kinds of notification each order was sent, from the lines notification logged. */
function sentKinds(lines: Array<Record<string, unknown>>): Map<string, string[]> {
  const sent = new Map<string, string[]>();
  for (const line of lines) {
    const notification = notificationSent(line);
    if (!notification) continue;
    const { orderId, kind } = notification;
    sent.set(orderId, [...sent.get(orderId) ?? [], kind]);
  }
  return sent;
}

/**
 * The faults, spread evenly over the stream with some jitter, in a shuffled order; the inventory
 * outage a quarter of the way in.
 */
function planFaults(
  seconds: number,
  options: { brokerOutage: boolean; databaseOutage: boolean },
): Array<{ atMs: number; fault: FaultKind }> {
  const { brokerOutage, databaseOutage } = options;
  const faults: FaultKind[] = [
    ...SERVICES,
    ...SERVICES,
    "force-close",
    "force-close",
    ...POISON.map(() => "poison" as const),
    ...(brokerOutage ? ["outage" as const, "outage" as const] : []),
    ...(databaseOutage ? ["database outage" as const, "database outage" as const] : []),
  ];
  for (let i = faults.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [faults[i], faults[j]] = [faults[j], faults[i]];
  }
  const step = (seconds * 1000) / (faults.length + 1);
  const planned = faults.map((fault, i) => ({
    atMs: step * (i + 1) + (Math.random() - 0.5) * step * 0.5,
    fault,
  }));
  // At a fixed point, so that orders keep coming in all through the inventory outage.
  planned.push({ atMs: seconds * 1000 / 4, fault: "inventory-outage" });
  return planned.sort((a, b) => a.atMs - b.atMs);
}

/** Cancels `orderId` at a random moment in the next 1.5 s, as a student who changed their mind. */
async function cancelSoon(stack: Stack, orderId: string): Promise<CancelAnswer> {
  await sleep(Math.random() * 1500);
  return await cancelUntilAnswered(() => stack.services.order?.url, orderId, {
    deadlineMs: ANSWER_DEADLINE_MS,
  });
}

if (import.meta.main) {
  await runFromCommandLine(
    "test:chaos",
    (args, log) =>
      runChaos({
        seconds: args.seconds,
        rate: args.rate,
        brokerOutage: args.brokerOutage,
        databaseOutage: args.databaseOutage,
        log,
      }),
    { usage: USAGE, accepts: ["seconds", "rate", "broker-outage", "db-outage"] },
  );
}
