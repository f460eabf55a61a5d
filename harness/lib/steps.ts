/**
 * Steps the scenarios share: their command line, their step-by-step report ending in one PASS or
 * FAIL line, a stack that is closed on Ctrl-C too, and the HTTP and AMQP probes that count what
 * happened to each order.
 * @module
 */
import { parseArgs } from "node:util";
import {
  managementApi,
  SERVICES,
  type Stack,
  type StackOptions,
  startStack,
  waitFor,
} from "./stack.ts";
import { deadLetterQueue, EventType, EXCHANGE, QUEUES } from "../../shared/topology.ts";
import type { Tap } from "./broker_tools.ts";
import { describeError } from "../../shared/log.ts";

/** What a scenario found: printed as its last line, or as one JSON object with `--json`. */
export interface ScenarioResult {
  name: string;
  pass: boolean;
  /** Why it failed: what was expected, what was seen. */
  reason?: string;
  /** One line on what passed. */
  summary?: string;
  figures: Record<string, number | string>;
}

/** Where a scenario writes its steps; `--json` silences them. */
export type StepLog = (line: string) => void;

/** Options every scenario's `run…()` takes. */
export interface ScenarioOptions {
  /** Receives each step and figure as a line. @default {console.log} */
  log?: StepLog;
}

/** The command line of a scenario. */
export interface ScenarioArgs {
  json: boolean;
  help: boolean;
  /** `--down`, in seconds. */
  down?: number;
  /** `--orders`. */
  orders?: number;
  /** `--chart`, an SVG file to write. */
  chart?: string;
  /** `--seconds`: how long a scenario runs. */
  seconds?: number;
  /** `--rate`: orders per second. */
  rate?: number;
  /** `--broker-outage`: cut the services off the broker for a while. */
  brokerOutage?: boolean;
  /** `--db-outage`: cut the services off their database for a while. */
  databaseOutage?: boolean;
}

/** Options for {@linkcode parseScenarioArgs}. */
export interface ParseArgsOptions {
  /** The options this scenario takes besides `--json` and `--help`. @default {[]} */
  accepts?: ReadonlyArray<
    "down" | "orders" | "chart" | "seconds" | "rate" | "broker-outage" | "db-outage"
  >;
}

/** The options that take no value. */
const FLAGS = new Set(["broker-outage", "db-outage"]);

/**
 * Parses `args` (usually `Deno.args`).
 * @throws {RangeError} naming the option and what it must be
 */
export function parseScenarioArgs(args: string[], options: ParseArgsOptions = {}): ScenarioArgs {
  const { accepts = [] } = options;
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args,
      strict: true,
      options: {
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
        ...Object.fromEntries(
          accepts.map((
            name,
          ) => [name, { type: FLAGS.has(name) ? "boolean" as const : "string" as const }]),
        ),
      },
    }).values;
  } catch (error) {
    throw new RangeError(
      `Cannot run the scenario as its arguments are invalid: ${describeError(error)}`,
    );
  }
  const result: ScenarioArgs = { json: values.json === true, help: values.help === true };
  if (typeof values.down === "string") result.down = positiveNumber("--down", values.down);
  if (typeof values.orders === "string") {
    result.orders = positiveNumber("--orders", values.orders, { integer: true });
  }
  if (typeof values.seconds === "string") {
    result.seconds = positiveNumber("--seconds", values.seconds);
  }
  if (typeof values.rate === "string") result.rate = positiveNumber("--rate", values.rate);
  if (values["broker-outage"] === true) result.brokerOutage = true;
  if (values["db-outage"] === true) result.databaseOutage = true;
  if (typeof values.chart === "string") {
    if (!values.chart.endsWith(".svg")) {
      throw new RangeError(
        `Cannot run the scenario as --chart must name an .svg file: current value is "${values.chart}"`,
      );
    }
    result.chart = values.chart;
  }
  return result;
}

function positiveNumber(name: string, text: string, options: { integer?: boolean } = {}): number {
  const value = Number(text);
  const ok = text.trim() !== "" && Number.isFinite(value) && value > 0 &&
    (!options.integer || Number.isInteger(value));
  if (!ok) {
    throw new RangeError(
      `Cannot run the scenario as ${name} must be a positive ${
        options.integer ? "integer" : "number"
      }: current value is "${text}"`,
    );
  }
  return value;
}

/** Collects a scenario's figures and failed expectations while it runs. */
export interface Report {
  /** Prints one step, with the seconds since the scenario began. */
  step(text: string): void;
  /** Records a figure, printed with the others at the end. */
  figure(name: string, value: number | string): void;
  /** Records a failure unless `ok`: `expected …, saw …`. */
  expect(ok: boolean, expected: string, seen: string): void;
  /** The one line a pass prints after PASS. */
  summary(text: string): void;
}

/**
 * Runs `body` as the scenario `name` and turns what it reported into a result. Never rejects: an
 * error thrown by `body` (a deadline passed, a service died) is a FAIL with that error as reason.
 */
export async function runScenario(
  name: string,
  options: ScenarioOptions,
  body: (report: Report) => Promise<void>,
): Promise<ScenarioResult> {
  const { log = console.log } = options;
  const began = performance.now();
  const figures: Record<string, number | string> = {};
  const failures: string[] = [];
  let summary: string | undefined;
  const report: Report = {
    step(text) {
      log(`[${((performance.now() - began) / 1000).toFixed(1).padStart(5)}s] ${text}`);
    },
    figure(figureName, value) {
      figures[figureName] = value;
    },
    expect(ok, expected, seen) {
      if (!ok) failures.push(`expected ${expected}, saw ${seen}`);
    },
    summary(text) {
      summary = text;
    },
  };
  try {
    await body(report);
  } catch (error) {
    failures.push(describeError(error));
  }
  figures.duration_s = round((performance.now() - began) / 1000, 1);
  return failures.length === 0
    ? { name, pass: true, summary, figures }
    : { name, pass: false, reason: failures.join("; "), figures };
}

/** The last line of a scenario's output: `PASS name: …` or `FAIL name: …`. */
export function formatResult(result: ScenarioResult): string {
  return result.pass
    ? `PASS ${result.name}${result.summary ? `: ${result.summary}` : ""}`
    : `FAIL ${result.name}: ${result.reason ?? "no reason given"}`;
}

/** Options for {@linkcode runFromCommandLine}. */
export interface CommandOptions extends ParseArgsOptions {
  /** Printed for `--help`. */
  usage: string;
}

/**
 * The `import.meta.main` block of a scenario: parses `Deno.args`, runs, prints the steps and the
 * PASS/FAIL line (or one JSON object with `--json`), and exits 0 on PASS, else 1.
 */
export async function runFromCommandLine(
  name: string,
  run: (args: ScenarioArgs, log: StepLog) => Promise<ScenarioResult>,
  options: CommandOptions,
): Promise<never> {
  let args: ScenarioArgs;
  try {
    args = parseScenarioArgs(Deno.args, options);
  } catch (error) {
    const result = { name, pass: false, reason: describeError(error), figures: {} };
    const json = Deno.args.includes("--json");
    console.log(json ? JSON.stringify(result) : `${formatResult(result)}\n\n${options.usage}`);
    Deno.exit(1);
  }
  if (args.help) {
    console.log(options.usage);
    Deno.exit(0);
  }
  let result: ScenarioResult;
  try {
    result = await run(args, args.json ? () => {} : console.log);
  } catch (error) {
    result = { name, pass: false, reason: describeError(error), figures: {} };
  }
  // The signal handler is closing the stack and exits 130 when done.
  if (interrupting) await new Promise(() => {});
  if (args.json) console.log(JSON.stringify(result));
  else console.log(`${formatFigures(result.figures)}\n${formatResult(result)}`);
  Deno.exit(result.pass ? 0 : 1);
}

function formatFigures(figures: Record<string, number | string>): string {
  const width = Math.max(...Object.keys(figures).map((key) => key.length));
  return ["figures:", ...Object.entries(figures).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)]
    .join("\n");
}

/** Set once a signal arrived: the scenario's own failure that follows is not worth a FAIL line. */
let interrupting = false;

/** What an interrupted scenario still cleans up, newest first; see {@linkcode cleanUpOnInterrupt}. */
const interruptCleanups: Array<() => Promise<void>> = [];

const INTERRUPT_SIGNALS: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT"]
  : ["SIGINT", "SIGTERM"];

/** Runs every registered cleanup, newest first, as `finally` blocks would unwind, then exits 130. */
async function onInterrupt(): Promise<void> {
  if (interrupting) return;
  interrupting = true;
  for (const cleanup of [...interruptCleanups].reverse()) {
    await cleanup().catch((error) => console.error(`Cannot clean up: ${describeError(error)}`));
  }
  Deno.exit(130);
}

/**
 * Runs `cleanup` when the process gets SIGINT (Ctrl-C) or SIGTERM, before it exits 130: for what a
 * scenario made that would outlive it, such as a stack, a database or broker nodes. Cleanups run
 * newest first, so a stack made inside a cluster is closed before the cluster. The signals are
 * listened to only while a cleanup is registered.
 * @returns a function that unregisters it, for when the scenario has cleaned up itself
 */
export function cleanUpOnInterrupt(cleanup: () => Promise<void>): () => void {
  if (interruptCleanups.length === 0) {
    for (const signal of INTERRUPT_SIGNALS) Deno.addSignalListener(signal, onInterrupt);
  }
  interruptCleanups.push(cleanup);
  return function forget() {
    const index = interruptCleanups.indexOf(cleanup);
    if (index < 0) return;
    interruptCleanups.splice(index, 1);
    if (interruptCleanups.length === 0) {
      for (const signal of INTERRUPT_SIGNALS) Deno.removeSignalListener(signal, onInterrupt);
    }
  };
}

/**
 * Starts an isolated stack, runs `fn` with it and closes it afterwards, also when `fn` throws and
 * when the process gets SIGINT (Ctrl-C) or SIGTERM: then it closes the stack and exits 130.
 */
export async function withStack<T>(
  options: StackOptions,
  fn: (stack: Stack) => Promise<T>,
): Promise<T> {
  // The services are started here rather than by startStack() so that, when one fails to start,
  // the others are stopped too: startStack() cannot stop a service that is still starting.
  const starting = startStack({ ...options, services: [] });
  let started: Promise<unknown> = Promise.resolve();
  // A signal can come while the stack is still starting; wait for it so that nothing is left behind.
  const forget = cleanUpOnInterrupt(async function closeInterruptedStack() {
    console.error("Interrupted: stopping the services and deleting the vhost");
    try {
      const stack = await starting;
      await started;
      await stack.close();
    } catch {
      // Nothing was started, or it is already closed.
    }
  });
  try {
    const stack = await starting;
    try {
      const starts = Promise.allSettled(
        (options.services ?? SERVICES).map((name) => stack.start(name)),
      );
      started = starts;
      const failed = (await starts).find((start) => start.status === "rejected");
      if (failed) throw failed.reason;
      return await fn(stack);
    } finally {
      await stack.close();
    }
  } finally {
    forget();
  }
}

/** How long one HTTP request to a service may take, in milliseconds. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * `fetch` with a deadline: a service that stops answering fails the step instead of hanging it.
 * @throws {Error} naming the request when no answer came in time
 */
export async function request(url: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (cause) {
    throw new Error(
      `Cannot ${init.method ?? "GET"} ${url} as it did not answer within ${REQUEST_TIMEOUT_MS} ms`,
      { cause },
    );
  }
}

/** The status of `GET url`, with the body discarded. */
export async function statusOf(url: string): Promise<number> {
  const response = await request(url);
  await response.body?.cancel();
  return response.status;
}

/**
 * Resolves or rejects as `promise` does, or rejects after `ms` milliseconds naming `what`.
 * For the broker's confirms, which have no deadline of their own.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until every running service of `stack` answers `/ready` with 200. */
export async function waitReady(stack: Stack, deadlineMs = 15_000): Promise<void> {
  await waitFor("every service to be ready", async () => {
    const statuses = await Promise.all(
      Object.values(stack.services).map((service) => statusOf(`${service.url}/ready`)),
    );
    return statuses.every((status) => status === 200);
  }, { timeoutMs: deadlineMs });
}

/** An order as `POST /order` takes it. */
export interface OrderRequest {
  user_id: string;
  items: Array<{ sku: string; qty: number }>;
}

/**
 * Places `order` over HTTP.
 * @returns the new order's id
 * @throws {Error} when the order service does not answer 202
 */
export async function placeOrder(stack: Stack, order: OrderRequest): Promise<string> {
  const response = await request(`${stack.url("order")}/order`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(order),
  });
  const text = await response.text();
  if (response.status !== 202) {
    throw new Error(`Cannot place an order as POST /order answered ${response.status}: ${text}`);
  }
  return JSON.parse(text).order_id;
}

/** Answers after which sending an order again cannot help: the request itself is wrong. */
const FINAL_STATUSES = new Set([400, 409, 413, 415]);

/** What sending one order until it was answered came to. */
export interface Placed {
  /** Set when the order API answered 202. */
  orderId?: string;
  /** POSTs sent: more than one when the first got no 202. */
  attempts: number;
  /** The 202 said `Idempotent-Replayed`: an earlier attempt had been committed, its answer lost. */
  replayed: boolean;
  /** Why no 202 came. */
  error?: string;
}

/** Options for {@linkcode placeUntilAnswered}. */
export interface PlaceOptions {
  /** The `Idempotency-Key` every attempt carries. */
  key: string;
  /** How long to keep sending, in milliseconds. */
  deadlineMs: number;
  /** Called after each attempt that got no 202, before the next. @default {nothing} */
  afterFailure?: () => void;
}

/**
 * POSTs `order` to the order API at `orderUrl()` until it answers 202, as a careful client does:
 * after a failure (no instance runs, it died under the request, or it answered 5xx), after its
 * `Retry-After` if it gave one, again with the same `Idempotency-Key` to wherever `orderUrl()` then
 * points, so that an order committed just before its answer was lost comes back rather than being
 * made twice. Never rejects: without a 202
 * before the deadline, or after a 4xx, the result says why.
 */
export async function placeUntilAnswered(
  orderUrl: () => string | undefined,
  order: OrderRequest,
  options: PlaceOptions,
): Promise<Placed> {
  const { key, deadlineMs, afterFailure = () => {} } = options;
  const deadline = Date.now() + deadlineMs;
  let attempts = 0;
  let error = "no order instance was running";
  while (Date.now() < deadline) {
    let pauseMs = 50;
    const url = orderUrl();
    if (url) {
      attempts++;
      try {
        const response = await request(`${url}/order`, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key },
          body: JSON.stringify(order),
        });
        const text = await response.text();
        if (response.status === 202) {
          const replayed = response.headers.get("idempotent-replayed") === "true";
          return { orderId: JSON.parse(text).order_id, attempts, replayed };
        }
        error = `POST /order answered ${response.status}: ${text.slice(0, 200)}`;
        if (FINAL_STATUSES.has(response.status)) break;
        // A 503 of a service whose database is out says when to ask again.
        const retryAfterS = Number(response.headers.get("retry-after"));
        if (retryAfterS > 0) pauseMs = Math.min(retryAfterS * 1000, deadline - Date.now());
      } catch (cause) {
        error = describeError(cause);
      }
      afterFailure();
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return { attempts, replayed: false, error };
}

/** What sending one cancellation until it was answered came to. */
export interface CancelAnswer {
  /** The answer's status: 202 (cancelled), 409 (rejected or expired first); 0 when none came. */
  status: number;
  /** The status the answer gave the order. */
  orderStatus?: string;
  attempts: number;
}

/**
 * POSTs `/orders/{orderId}/cancel` to the order API at `orderUrl()` until it answers 202, 404 or
 * 409, as a careful client does: a cancellation answers the same when it is repeated, so one whose
 * answer was lost is simply sent again. Never rejects: without an answer before the deadline, the
 * status is 0.
 */
export async function cancelUntilAnswered(
  orderUrl: () => string | undefined,
  orderId: string,
  options: { deadlineMs: number },
): Promise<CancelAnswer> {
  const deadline = Date.now() + options.deadlineMs;
  let attempts = 0;
  while (Date.now() < deadline) {
    const url = orderUrl();
    if (url) {
      attempts++;
      try {
        const response = await request(`${url}/orders/${orderId}/cancel`, { method: "POST" });
        const body = await response.json().catch(() => undefined);
        if ([202, 404, 409].includes(response.status)) {
          return { status: response.status, orderStatus: body?.status, attempts };
        }
      } catch {
        // The order service died under the request, or is down: send it again.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { status: 0, attempts };
}

/** How many notifications the notification service recorded for `orderId`. */
export async function notificationCount(stack: Stack, orderId: string): Promise<number> {
  const response = await request(`${stack.url("notification")}/notifications?order_id=${orderId}`);
  return (await response.json()).length;
}

/** Publishes `body` as it is to the events exchange under `OrderPlaced`, as the seed's tests do. */
export async function publishOrderPlaced(
  stack: Stack,
  body: string | Uint8Array,
  messageId: string,
): Promise<void> {
  const published = stack.broker.publish([{
    exchange: EXCHANGE,
    routingKey: EventType.OrderPlaced,
    body,
    messageId,
    type: EventType.OrderPlaced,
  }]);
  await within(published, REQUEST_TIMEOUT_MS, `the broker to confirm ${messageId}`);
}

/** What one order led to, as the services show it. */
export interface OrderEffects {
  order_id: string;
  /** The order service's status, undefined when it does not know the order. */
  status?: string;
  /** Reservations inventory shows for it (0 or 1). */
  reservations: number;
  /** Notifications recorded for it. */
  notifications: number;
  /** Their kinds, oldest first. */
  notificationKinds: string[];
  /** Its reservation as inventory shows it, if any. */
  reservation?: { status: string; items: Array<{ sku: string; qty: number }> };
  /** When the order was placed and last changed, as the order service shows them. */
  createdAt?: string;
  updatedAt?: string;
  /** Notifications sent: the notification service's log lines with the message. */
  sent: number;
  /** Distinct outcome events on the tap, by `event_id`. */
  outcomes: number;
  /** Outcome messages on the tap, counting a republished copy of the same event. */
  outcomeCopies: number;
}

/** Counts the effects of each of `orderIds`, asking at most 16 requests at a time. */
export async function countEffects(
  stack: Stack,
  orderIds: string[],
  outcomes?: Tap,
): Promise<OrderEffects[]> {
  const byOrder = new Map<string, { events: Set<string>; copies: number }>();
  for (const message of outcomes?.messages ?? []) {
    const id = message.correlationId ?? "";
    const entry = byOrder.get(id) ?? { events: new Set(), copies: 0 };
    entry.events.add(message.messageId ?? "");
    entry.copies++;
    byOrder.set(id, entry);
  }
  const sentLog = stack.services.notification?.logs ?? [];
  return await mapLimit(orderIds, 16, async (orderId) => {
    const [order, reservation, notifications] = await Promise.all([
      stack.services.order ? getJson(`${stack.url("order")}/orders/${orderId}`) : undefined,
      getJson(`${stack.url("inventory")}/reservations/${orderId}`),
      getJson(`${stack.url("notification")}/notifications?order_id=${orderId}`),
    ]);
    const notified: Array<{ kind: string }> = Array.isArray(notifications.body)
      ? notifications.body
      : [];
    return {
      order_id: orderId,
      status: order?.status === 200 ? order.body.status : undefined,
      createdAt: order?.body?.created_at,
      updatedAt: order?.body?.updated_at,
      reservations: reservation.status === 200 ? 1 : 0,
      reservation: reservation.status === 200 ? reservation.body : undefined,
      notifications: notified.length,
      notificationKinds: notified.map((n) => n.kind),
      sent: sentLog.filter((line) =>
        line.order_id === orderId && typeof line.msg === "string" &&
        line.msg.startsWith(`order ${orderId} `)
      ).length,
      outcomes: byOrder.get(orderId)?.events.size ?? 0,
      outcomeCopies: byOrder.get(orderId)?.copies ?? 0,
    };
  });
}

/** Inventory's stock per SKU. */
export async function getStock(stack: Stack): Promise<Record<string, number>> {
  return (await getJson(`${stack.url("inventory")}/stock`)).body;
}

// deno-lint-ignore no-explicit-any -- the scenarios check the fields they use
async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await request(url);
  return { status: response.status, body: await response.json() };
}

/** Reports a step with the depth of every dead-letter queue, and a failure unless all are empty. */
export async function expectDeadLettersEmpty(stack: Stack, report: Report): Promise<void> {
  const depths = await Promise.all(
    QUEUES.map(async (q) =>
      [deadLetterQueue(q), await stack.tools.queueDepth(deadLetterQueue(q))] as const
    ),
  );
  report.step(`dead-letter queues: ${depths.map(([q, d]) => `${q} ${d}`).join(", ")}`);
  report.expect(
    depths.every(([, d]) => d === 0),
    "every DLQ empty",
    depths.filter(([, d]) => d > 0).map(([q, d]) => `${q} ${d}`).join(", "),
  );
}

/** A message as the management API's "get messages" returns it. */
export interface PeekedMessage {
  payload: string;
  payload_encoding: "string" | "base64";
  payload_bytes: number;
  redelivered: boolean;
  properties: { message_id?: string; headers?: Record<string, unknown> };
}

/**
 * Reads up to `count` messages of `queue` in the stack's vhost through the management API and puts
 * them back (`ack_requeue_true`), so that nothing is taken from the queue.
 */
export async function peekQueue(
  stack: Stack,
  queue: string,
  count: number,
): Promise<PeekedMessage[]> {
  const vhost = encodeURIComponent(stack.vhost.name);
  return await managementApi(stack.managementUrl)(
    "POST",
    `/api/queues/${vhost}/${encodeURIComponent(queue)}/get`,
    { count, ackmode: "ack_requeue_true", encoding: "auto" },
  ) as PeekedMessage[];
}

/** The bytes of a peeked message's body. */
export function payloadBytes(message: PeekedMessage): Uint8Array {
  return message.payload_encoding === "base64"
    ? Uint8Array.from(atob(message.payload), (c) => c.charCodeAt(0))
    : new TextEncoder().encode(message.payload);
}

/** Counts equal values: `tally(["CONFIRMED", "CONFIRMED", "PENDING"])` is `"2×CONFIRMED, 1×PENDING"`. */
export function tally(values: ReadonlyArray<string | number | undefined>): string {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(String(value), (counts.get(String(value)) ?? 0) + 1);
  return [...counts].map(([value, count]) => `${count}×${value}`).join(", ") || "nothing";
}

/** Maps `items` with `fn`, running at most `limit` calls at once, keeping the order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Rounds `value` to `digits` decimals. */
export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
