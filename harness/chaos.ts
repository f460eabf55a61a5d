/**
 * `deno task test:chaos`: a steady stream of orders while every kind of fault happens at random
 * moments: each service SIGKILLed and restarted, connections force-closed by the broker, transient
 * handler faults (`FAULT_TRANSIENT_RATE=0.2`), a little injected poison, and with
 * `--broker-outage` the services cut off the broker for some seconds by a TCP proxy this scenario
 * controls (the real broker is never stopped). A client that gets no answer (the order service died
 * under its request, or is down) sends the order again with its `Idempotency-Key`. PASS when every
 * order is accepted, and every accepted order ends CONFIRMED or
 * REJECTED with exactly one reservation, one stock change and one notification, and the DLQs hold
 * the injected poison and nothing else.
 * @module
 */
import type { RunningService, ServiceName, Stack } from "./_stack.ts";
import { managementApi, SERVICES, waitFor } from "./_stack.ts";
import { startTcpProxy, type TcpProxy } from "./_tcp_proxy.ts";
import {
  countEffects,
  getStock,
  peekQueue,
  type Placed,
  placeUntilAnswered,
  publishOrderPlaced,
  type Report,
  round,
  runFromCommandLine,
  runScenario,
  type ScenarioOptions,
  type ScenarioResult,
  tally,
  waitReady,
  withStack,
} from "./_steps.ts";
import { deadLetterQueue, EventType, QUEUES } from "../shared/topology.ts";

/** How long a client keeps sending an order that got no answer, in milliseconds. */
const ANSWER_DEADLINE_MS = 20_000;

/** Options for {@linkcode runChaos}. */
export interface ChaosOptions extends ScenarioOptions {
  /** How long orders stream in while faults happen, in seconds. @default {30} */
  seconds?: number;
  /** Orders per second. @default {20} */
  rate?: number;
  /** Cut the services off the broker for a few seconds, twice. @default {false} */
  brokerOutage?: boolean;
}

const USAGE = `Usage: deno task test:chaos [--seconds S] [--rate R] [--broker-outage] [--json]

  --seconds S        how long orders stream in while faults happen (default 30)
  --rate R           orders per second (default 20)
  --broker-outage    also cut the services off the broker for a few seconds, twice
  --json             print one JSON object instead of the steps`;

/** Plenty of burgers; few cookies, so that some orders are rejected for want of stock. */
const STOCK = { burger: 100_000, cookie: 40 };

/** Poison injected on purpose: exactly these may sit in a DLQ at the end. */
const POISON = ["not json", "[]", '{"invalid":"json","no":"order field"}'];

/** Enough retries that a 0.2 fault rate practically never exhausts them (0.2^9 per message). */
const RETRY_DELAYS = "100ms,200ms,300ms,500ms,500ms,1s,1s,1s";

/** One fault and when it happened, for the timeline. */
interface Fault {
  at_s: number;
  fault: string;
}

/** What can go wrong: a service SIGKILLed, or one of the other faults. */
type FaultKind = ServiceName | "force-close" | "poison" | "outage";

/** Runs the chaos scenario on a stack of its own. */
export function runChaos(options: ChaosOptions = {}): Promise<ScenarioResult> {
  const { seconds = 30, rate = 20, brokerOutage = false } = options;
  return runScenario("test:chaos", options, async (report) => {
    const proxy = startTcpProxy({ hostname: "127.0.0.1", port: brokerPort() });
    try {
      await withStack({
        servicesAmqpUrl: (url) => viaProxy(url, proxy),
        env: {
          RETRY_DELAYS,
          INVENTORY_STOCK: Object.entries(STOCK).map(([sku, qty]) => `${sku}=${qty}`).join(","),
        },
        serviceEnv: {
          inventory: { FAULT_TRANSIENT_RATE: "0.2" },
          notification: { FAULT_TRANSIENT_RATE: "0.2" },
        },
      }, (stack) => chaos(stack, proxy, report, { seconds, rate, brokerOutage }));
    } finally {
      proxy.close();
    }
  });
}

function brokerPort(): number {
  const url = new URL(Deno.env.get("AMQP_URL") || "amqp://guest:guest@127.0.0.1:5672/");
  return Number(url.port) || 5672;
}

function viaProxy(amqpUrl: string, proxy: TcpProxy): string {
  const url = new URL(amqpUrl);
  url.hostname = "127.0.0.1";
  url.port = String(proxy.port);
  return url.toString();
}

async function chaos(
  stack: Stack,
  proxy: TcpProxy,
  report: Report,
  options: Required<Omit<ChaosOptions, "log">>,
): Promise<void> {
  const { seconds, rate, brokerOutage } = options;
  // The stack's own connection bypasses the proxy, so the tap sees every event, outages included.
  const outcomes = await stack.broker.tap([EventType.InventoryReserved, EventType.InventoryFailed]);
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
      (brokerOutage ? " and broker outages" : ""),
  );
  const accepted: Array<{ orderId: string; cookies: number }> = [];
  let resent = 0;
  let replayed = 0;
  let unanswered = 0;
  const stream = streamOrders(stack, { seconds, rate }, (result) => {
    if (result.orderId) accepted.push({ orderId: result.orderId, cookies: result.cookies });
    else unanswered++;
    if (result.orderId && result.attempts > 1) resent++;
    if (result.replayed) replayed++;
  });

  const plan = planFaults(seconds, brokerOutage);
  for (const { atMs, fault } of plan) {
    const wait = began + atMs - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (fault === "poison") {
      const body = POISON[faults.filter((f) => f.fault.startsWith("poison")).length];
      await publishOrderPlaced(stack, body, `poison-${faults.length}`);
      note(`poison ${JSON.stringify(body)}`);
    } else if (fault === "force-close") {
      const closed = await forceCloseServiceConnections(stack);
      note(`force-closed ${closed} connections`);
    } else if (fault === "outage") {
      proxy.cut();
      note("broker outage begins");
      await new Promise((resolve) => setTimeout(resolve, 3000));
      proxy.restore();
      note("broker outage ends");
    } else {
      await stack.stop(fault, "SIGKILL");
      note(`SIGKILL ${fault}`);
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 700));
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
  const settleBegan = performance.now();
  const orderIds = accepted.map((a) => a.orderId);
  await waitFor(
    "every accepted order to be decided",
    async () => (await pending(stack, orderIds)).length === 0,
    {
      timeoutMs: 60_000,
      intervalMs: 250,
    },
  ).catch(() => {});
  const undecided = await pending(stack, orderIds);
  report.expect(
    undecided.length === 0,
    "every accepted order decided",
    `${undecided.length} still PENDING`,
  );
  // The last notifications may trail the order status by a retry or two.
  await waitFor("every notification", async () => {
    const effects = await countEffects(stack, accepted.map((a) => a.orderId), outcomes);
    return effects.every((e) => e.notifications === 1);
  }, { timeoutMs: 30_000, intervalMs: 250 }).catch(() => {});
  report.figure("settle_s", round((performance.now() - settleBegan) / 1000, 1));

  const effects = await countEffects(stack, accepted.map((a) => a.orderId), outcomes);
  const sent = (orderId: string) =>
    processes.filter((p) => p.name === "notification").flatMap((p) => p.logs)
      .filter((line) =>
        line.order_id === orderId && String(line.msg).startsWith(`order ${orderId} `)
      ).length;
  const bad = effects.filter((e) =>
    (e.status !== "CONFIRMED" && e.status !== "REJECTED") || e.reservations !== 1 ||
    e.notifications !== 1 || e.outcomes !== 1 || sent(e.order_id) !== 1
  );
  report.expect(
    bad.length === 0,
    "each accepted order decided with 1 reservation, 1 outcome event, 1 notification recorded and sent",
    bad.slice(0, 3).map((e) => JSON.stringify({ ...e, sent: sent(e.order_id) })).join(", "),
  );

  const confirmed = new Set(effects.filter((e) => e.status === "CONFIRMED").map((e) => e.order_id));
  const stock = await getStock(stack);
  const burgers = accepted.filter((a) => confirmed.has(a.orderId)).length;
  const cookies = accepted.filter((a) => confirmed.has(a.orderId)).reduce(
    (sum, a) => sum + a.cookies,
    0,
  );
  report.expect(
    stock.burger === STOCK.burger - burgers && stock.cookie === STOCK.cookie - cookies,
    `stock burger=${STOCK.burger - burgers} cookie=${
      STOCK.cookie - cookies
    } (one change per confirmed order)`,
    `burger=${stock.burger} cookie=${stock.cookie}`,
  );
  report.expect(stock.cookie >= 0, "stock never negative", `cookie=${stock.cookie}`);

  const parked = await peekQueue(stack, deadLetterQueue(QUEUES[0]), 100);
  const others = await Promise.all(
    QUEUES.slice(1).map((q) => stack.broker.queueDepth(deadLetterQueue(q))),
  );
  const injected = faults.filter((f) => f.fault.startsWith("poison")).length;
  report.expect(
    parked.length === injected &&
      parked.every((m) => m.properties.message_id?.startsWith("poison-")) &&
      others.every((depth) => depth === 0),
    `the ${injected} injected poison messages in order-placed.dlq and nothing in any other DLQ`,
    `order-placed.dlq ${parked.length} (${
      tally(parked.map((m) => m.properties.message_id))
    }), others ${others}`,
  );

  const logs: Array<Record<string, unknown>> = processes.flatMap((p) =>
    p.logs.map((line) => ({ ...line, service: p.name }))
  );
  const count = (name: ServiceName, msg: string) =>
    logs.filter((l) => l.service === name && l.msg === msg).length;
  report.figure("orders_accepted", accepted.length);
  report.figure("orders_sent_again", resent);
  report.figure("orders_replayed", replayed);
  report.figure("confirmed", confirmed.size);
  report.figure("rejected", accepted.length - confirmed.size);
  for (const name of SERVICES) {
    report.figure(`kills_${name}`, faults.filter((f) => f.fault === `SIGKILL ${name}`).length);
  }
  report.figure("forced_closes", faults.filter((f) => f.fault.startsWith("force-closed")).length);
  report.figure("outages", faults.filter((f) => f.fault === "broker outage begins").length);
  report.figure("retries", logs.filter((l) => l.msg === "handling failed, retrying later").length);
  report.figure("duplicates_skipped", logs.filter((l) => l.msg === "skipped duplicate").length);
  report.figure(
    "outcome_copies",
    effects.reduce((sum, e) => sum + e.outcomeCopies - e.outcomes, 0),
  );
  report.figure(
    "reconnects",
    ["order", "inventory", "notification"].reduce(
      (sum, name) => sum + count(name as ServiceName, "reconnected to broker"),
      0,
    ),
  );
  report.figure("timeline", faults.map((f) => `${f.at_s}s ${f.fault}`).join(" | "));
  report.summary(
    `${accepted.length} orders through ${faults.length} faults: each decided once, ` +
      `${confirmed.size} confirmed, ${accepted.length - confirmed.size} rejected`,
  );
}

/** The faults, spread evenly over the stream with some jitter, in a shuffled order. */
function planFaults(
  seconds: number,
  brokerOutage: boolean,
): Array<{ atMs: number; fault: FaultKind }> {
  const faults: FaultKind[] = [
    ...SERVICES,
    ...SERVICES,
    "force-close",
    "force-close",
    ...POISON.map(() => "poison" as const),
    ...(brokerOutage ? ["outage" as const, "outage" as const] : []),
  ];
  for (let i = faults.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [faults[i], faults[j]] = [faults[j], faults[i]];
  }
  const step = (seconds * 1000) / (faults.length + 1);
  return faults.map((fault, i) => ({
    atMs: step * (i + 1) + (Math.random() - 0.5) * step * 0.5,
    fault,
  }));
}

/**
 * Posts `rate` orders a second for `seconds`, open loop: a slow or dead order service does not slow
 * the stream down. Each order buys a burger, and every third one a cookie too.
 */
async function streamOrders(
  stack: Stack,
  options: { seconds: number; rate: number },
  onResult: (result: Placed & { cookies: number }) => void,
): Promise<void> {
  const total = Math.round(options.seconds * options.rate);
  const began = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const wait = began + (i * 1000) / options.rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const cookies = i % 3 === 0 ? 1 : 0;
    const items = [
      { sku: "burger", qty: 1 },
      ...(cookies ? [{ sku: "cookie", qty: cookies }] : []),
    ];
    inFlight.push((async () => {
      // The order service may have committed an order just before it died under the request: the
      // client sends it again with its Idempotency-Key, which must not make it twice.
      const placed = await placeUntilAnswered(
        () => stack.services.order?.url,
        { user_id: `chaos-${i}`, items },
        { key: `chaos-${i}-${crypto.randomUUID()}`, deadlineMs: ANSWER_DEADLINE_MS },
      );
      onResult({ ...placed, cookies });
    })());
  }
  await Promise.all(inFlight);
}

/** The orders among `orderIds` that are still PENDING (or unknown). */
async function pending(stack: Stack, orderIds: string[]): Promise<string[]> {
  const effects = await countEffects(stack, orderIds);
  return effects.filter((e) => e.status !== "CONFIRMED" && e.status !== "REJECTED").map((e) =>
    e.order_id
  );
}

/** Closes the services' connections through the management API, not the harness's own. */
async function forceCloseServiceConnections(stack: Stack): Promise<number> {
  const api = managementApi();
  // The management API lists a new connection only after its next statistics round (~5 s):
  // wait a little for all three, then close what is there.
  let services: Array<{ name: string }> = [];
  await waitFor("the services' connections in the management API", async () => {
    const all = await api("GET", `/api/vhosts/${stack.vhost.name}/connections`) as Array<
      { name: string; client_properties: { connection_name?: string } }
    >;
    services = all.filter((c) => c.client_properties.connection_name !== "harness");
    return services.length >= SERVICES.length;
  }, { timeoutMs: 6_000, intervalMs: 250 }).catch(() => {});
  for (const connection of services) {
    await api("DELETE", `/api/connections/${encodeURIComponent(connection.name)}`).catch(() => {});
  }
  return services.length;
}

if (import.meta.main) {
  await runFromCommandLine(
    "test:chaos",
    (args, log) =>
      runChaos({ seconds: args.seconds, rate: args.rate, brokerOutage: args.brokerOutage, log }),
    { usage: USAGE, accepts: ["seconds", "rate", "broker-outage"] },
  );
}
