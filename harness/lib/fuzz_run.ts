/**
 * A fuzzing run against a running stack: fast-check generates requests for every route of the
 * three services, each is sent and its answer checked as it comes; afterwards the order database,
 * the broker traffic, `/metrics` and the services' memory are checked. A failure comes back as
 * fast-check's shrunk counterexample with the seed and path that replay it.
 * @module
 */
import fc from "fast-check";
import type { Stack } from "./stack.ts";
import { type ServiceName, SERVICES } from "./service_process.ts";
import { waitFor } from "./async.ts";
import { request } from "./http_probes.ts";
import { authorizationOf } from "./fuzz_auth.ts";
import {
  type Expectation,
  expectationOf,
  type FuzzCase,
  fuzzCaseArbitrary,
  ORDER_REF,
} from "./fuzz_cases.ts";
import {
  answerViolation,
  metricsViolations,
  publishingViolations,
  residentMb,
  storageViolations,
  storedOrderIds,
} from "./fuzz_checks.ts";
import { type SendOptions, sendRequest, type WireAnswer, type WireRequest } from "./fuzz_wire.ts";

/** Options for {@linkcode fuzzStack}. */
export interface FuzzOptions {
  /** Requests to try after the warm-up, at most. @default {500} */
  runs?: number;
  /** Stop trying after this many seconds (shrinking a failure included). @default {no limit} */
  seconds?: number;
  /** fast-check's seed; with `path`, replays one counterexample. @default {random} */
  seed?: number;
  /** fast-check's path of a counterexample, printed with a failure. @default {none} */
  path?: string;
  /** Requests sent before memory is first measured, unchecked for memory. @default {100} */
  warmupRuns?: number;
  /** How much a service's resident memory may grow after the warm-up, in MB. @default {48} */
  maxGrowthMb?: number;
  /**
   * How long fast-check may shrink a failure, in milliseconds; after it the smallest failing case
   * found so far is reported. @default {60000}
   */
  shrinkMs?: number;
  /** How long one request may take to be answered, in milliseconds. @default {10000} */
  requestTimeoutMs?: number;
  /** Progress lines. @default {none} */
  log?: (line: string) => void;
}

/** What a run tried and found. */
export interface FuzzResult {
  /** Requests sent, per service, warm-up included. */
  tried: Record<ServiceName, number>;
  total: number;
  /** Orders accepted with a 202. */
  accepted: number;
  elapsedMs: number;
  /** The seed of the main phase: what `--seed` takes to replay it. */
  seed: number;
  /** fast-check's shrunk counterexample, with its seed and path, when a request broke the contract. */
  failure?: string;
  /** What the checks after the run found: stored or published for a refusal, metrics, memory. */
  violations: string[];
  /** The request that took longest to be answered, and how long, in milliseconds. */
  slowest?: { ms: number; request: string };
  /** Resident memory of each service after the warm-up and at the end, in MB. */
  memory: Partial<Record<ServiceName, { afterWarmupMb?: number; endMb?: number }>>;
}

/** An order id that no order has: what `{order}` is before the fuzzer placed any. */
const NO_SUCH_ORDER = "01HZZZZZZZZZZZZZZZZZZZZZZZ";

/** Fuzzes every running service of `stack`, then checks what the run left behind. */
export async function fuzzStack(stack: Stack, options: FuzzOptions = {}): Promise<FuzzResult> {
  const {
    runs = 500,
    seconds,
    seed = Math.floor(Math.random() * 2 ** 31),
    path,
    warmupRuns = 100,
    maxGrowthMb = 48,
    requestTimeoutMs = 10_000,
    shrinkMs = 60_000,
    log = () => {},
  } = options;
  if (!(runs > 0) || !(warmupRuns >= 0)) {
    throw new RangeError(`Cannot fuzz as runs must be positive: current value is ${runs}`);
  }
  // In a fixed order, whatever order the services started in: a seed must replay the same cases.
  const services = SERVICES.filter((name) => stack.services[name] !== undefined);
  const secure = stack.secure;
  const tried = Object.fromEntries(services.map((s) => [s, 0])) as Record<ServiceName, number>;
  /** Orders accepted with a 202, newest last: what `{order}` picks from. */
  const accepted = new Set<string>();
  let newest: string | undefined;
  let slowest: FuzzResult["slowest"];
  const tap = await stack.tools.tap(["#"]);
  const started = performance.now();
  const send: SendOptions = { timeoutMs: requestTimeoutMs };
  if (services.includes("order")) {
    // One order from the start, so that a replayed counterexample finds one to read or cancel.
    newest = await placeFirstOrder(stack.url("order"), send);
    accepted.add(newest);
  }

  async function tryCase(c: FuzzCase): Promise<void> {
    const orderId = newest ?? NO_SUCH_ORDER;
    const wire = await wireRequestOf(c, orderId);
    // Deno's server refuses a request head over 64 KiB itself, whatever it asks for; one within a
    // few bytes of that says nothing about the services, so it is not sent.
    const head = headBytes(wire);
    if (head >= DENO_HEAD_LIMIT.sure && head < DENO_HEAD_LIMIT.refused) return;
    const expected = head >= DENO_HEAD_LIMIT.refused
      ? "server refuses"
      : expectationOf(c, { secure, knownOrder: newest !== undefined });
    tried[c.service]++;
    let answer: WireAnswer;
    const sentAt = performance.now();
    try {
      answer = await sendRequest(stack.url(c.service), wire, send);
      const ms = performance.now() - sentAt;
      if (ms > (slowest?.ms ?? 0)) {
        slowest = { ms, request: describeCase({ ...c, target: wire.target }) };
      }
    } catch (error) {
      // Deno's server may drop a request that is no HTTP without a word; anything else must answer.
      if (expected === "server refuses") return;
      throw new FuzzFailure(c, wire, expected, undefined, (error as Error).message);
    }
    if (c.route.startsWith("POST /order") && answer.status === 202) {
      const id = orderIdOf(answer);
      if (!id) throw new FuzzFailure(c, wire, expected, answer, "a 202 without an order_id");
      accepted.add(id);
      newest = id;
    }
    const violation = answerViolation(answer, expected, wire.method);
    if (violation) throw new FuzzFailure(c, wire, expected, answer, violation);
  }

  /** When shrinking stops: every case after it passes unsent, so that fast-check ends at once. */
  let shrinkUntil: number | undefined;
  async function tryOrShrink(c: FuzzCase): Promise<void> {
    if (shrinkUntil !== undefined && Date.now() > shrinkUntil) return;
    try {
      await tryCase(c);
    } catch (error) {
      if (shrinkUntil === undefined) {
        shrinkUntil = Date.now() + shrinkMs;
        log(
          `A request broke the contract; shrinking it for up to ${shrinkMs / 1000} s:\n  ${
            (error as Error).message
          }`,
        );
      }
      throw error;
    }
  }

  const arbitrary = fc.oneof(...services.map((s) => fuzzCaseArbitrary(s, { secure })));
  const property = fc.asyncProperty(arbitrary, tryOrShrink);
  const deadline = seconds === undefined ? undefined : Date.now() + seconds * 1000;
  const remainingMs = () => deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
  let failure: string | undefined;

  if (warmupRuns > 0 && path === undefined) {
    const warmup = await fc.check(property, {
      numRuns: warmupRuns,
      seed: seed ^ 0x5eed,
      interruptAfterTimeLimit: remainingMs(),
    });
    if (warmup.failed) failure = reportOf(warmup, "warm-up");
    log(`warm-up: ${warmup.numRuns} requests`);
  }
  const memory: FuzzResult["memory"] = {};
  for (const name of services) {
    memory[name] = { afterWarmupMb: await residentMb(stack.services[name]!.pid) };
  }
  if (!failure) {
    const progress = setInterval(async () => {
      const total = Object.values(tried).reduce((a, b) => a + b, 0);
      const rss = await Promise.all(
        services.map(async (name) => `${name} ${await residentMb(stack.services[name]!.pid)}`),
      );
      log(`${total} requests, ${accepted.size} orders accepted; resident MB: ${rss.join(", ")}`);
    }, 10_000);
    try {
      const main = await fc.check(property, {
        numRuns: runs,
        seed,
        path,
        interruptAfterTimeLimit: remainingMs(),
        markInterruptAsFailure: false,
      });
      if (main.failed) failure = reportOf(main, "run");
    } finally {
      clearInterval(progress);
    }
  }
  const elapsedMs = performance.now() - started;

  const violations: string[] = [];
  for (const name of services) {
    const endMb = await residentMb(stack.services[name]!.pid);
    memory[name]!.endMb = endMb;
    const before = memory[name]!.afterWarmupMb;
    if (endMb === undefined) violations.push(`${name} is no longer running`);
    else if (before !== undefined && endMb - before > maxGrowthMb) {
      violations.push(
        `${name} grew from ${before} MB to ${endMb} MB resident (over ${maxGrowthMb})`,
      );
    }
    if (endMb === undefined) continue;
    const metrics = await (await request(`${stack.url(name)}/metrics`)).text();
    violations.push(...metricsViolations(metrics).map((v) => `${name}: ${v}`));
  }
  // The relay publishes after the commit: wait for every accepted order's OrderPlaced.
  await waitFor(
    "an OrderPlaced for every accepted order",
    () => publishingViolations(accepted, tap.messages).every((v) => !v.includes("without")),
    { timeoutMs: 20_000 },
  ).catch(() => {});
  violations.push(...publishingViolations(accepted, tap.messages));
  await tap.close();
  if (services.includes("order")) {
    violations.push(...storageViolations(accepted, storedOrderIds(stack.dataDir)));
  }
  return {
    tried,
    total: Object.values(tried).reduce((a, b) => a + b, 0),
    accepted: accepted.size,
    elapsedMs,
    seed,
    failure,
    violations,
    memory,
    slowest,
  };
}

/** Places a valid order, with an admin's token in a secure stack, and returns its id. */
async function placeFirstOrder(orderUrl: string, options: SendOptions): Promise<string> {
  const authorization = await authorizationOf({ kind: "admin" });
  const answer = await sendRequest(orderUrl, {
    method: "POST",
    target: "/order",
    headers: [["Content-Type", "application/json"], ["Authorization", authorization!]],
    body: new TextEncoder().encode('{"user_id":"fuzz-first","items":[{"sku":"burger","qty":1}]}'),
    transport: "fetch",
  }, options);
  const id = answer.status === 202 ? orderIdOf(answer) : undefined;
  if (!id) throw new Error(`Cannot start fuzzing as a valid order got a ${answer.status}`);
  return id;
}

/** The request `c` stands for, with `orderId` for `{order}` and its token made. */
async function wireRequestOf(c: FuzzCase, orderId: string): Promise<WireRequest> {
  const headers = [...c.headers];
  const authorization = await authorizationOf(c.auth);
  if (authorization !== undefined) headers.push(["Authorization", authorization]);
  return {
    method: c.method,
    target: c.target.replaceAll(ORDER_REF, orderId),
    headers,
    body: c.body,
    stallAfter: c.stallAfter,
    transport: c.transport,
  };
}

function orderIdOf(answer: WireAnswer): string | undefined {
  try {
    const id = JSON.parse(new TextDecoder().decode(answer.body)).order_id;
    return typeof id === "string" ? id : undefined;
  } catch {
    return undefined;
  }
}

/** A request whose answer broke the contract: the message says what was sent and what came back. */
export class FuzzFailure extends Error {
  constructor(
    c: FuzzCase,
    wire: WireRequest,
    expected: Expectation,
    answer: WireAnswer | undefined,
    why: string,
  ) {
    super(
      `${why}\n  request:  ${
        describeCase({ ...c, target: wire.target })
      }\n  expected: ${expected}\n  answer:   ${answer ? describeAnswer(answer) : "none"}`,
    );
    this.name = "FuzzFailure";
  }
}

/** `c` in a few lines a person can read: method, target, headers and body, each cut short. */
export function describeCase(c: FuzzCase): string {
  const cut = (text: string, n: number) =>
    JSON.stringify(text.length > n ? `${text.slice(0, n)}…(${text.length} chars)` : text);
  const headers = c.headers.slice(0, 8).map(([n, v]) => `${cut(n, 30)}: ${cut(v, 60)}`);
  if (c.headers.length > 8) headers.push(`…${c.headers.length - 8} more`);
  const body = c.body
    ? `${c.bodyLabel ?? "bytes"}, ${c.body.length} bytes: ${
      cut(new TextDecoder().decode(c.body.subarray(0, 300)), 200)
    }`
    : "none";
  return [
    `${cut(c.method, 40)} ${cut(c.target, 120)} to ${c.service} by ${c.transport}`,
    `auth ${JSON.stringify(c.auth)}${c.beyondHttp ? `; not HTTP: ${c.beyondHttp}` : ""}`,
    `headers [${headers.join(", ")}]`,
    `body ${body}`,
  ].join("\n            ");
}

function describeAnswer(answer: WireAnswer): string {
  const text = new TextDecoder().decode(answer.body.subarray(0, 400));
  return `${answer.status} content-type ${JSON.stringify(answer.headers["content-type"])} ${
    JSON.stringify(text.slice(0, 300))
  } (the request went by ${answer.sentBy})`;
}

/** fast-check's verdict on a failed phase, with the seed and path that replay the counterexample. */
function reportOf(details: fc.RunDetails<[FuzzCase]>, phase: string): string {
  const error = details.errorInstance instanceof Error
    ? details.errorInstance.message
    : String(details.errorInstance);
  return [
    `The ${phase} failed after ${details.numRuns} requests (shrunk ${details.numShrinks} times).`,
    `Replay: deno task fuzz --seed ${details.seed} --path "${details.counterexamplePath}"`,
    `Counterexample: ${error}`,
  ].join("\n");
}

/**
 * Deno's HTTP server refuses a header section over 64 KiB with a plain 400, before any service code
 * (`order/http_limits_test.ts` measures it): heads up to `sure` bytes reach the services, heads of
 * `refused` bytes or more never do.
 */
const DENO_HEAD_LIMIT = { sure: 60 * 1024, refused: 66 * 1024 };

/** The bytes of `wire`'s request line and header section. */
function headBytes(wire: WireRequest): number {
  return wire.method.length + wire.target.length +
    wire.headers.reduce((sum, [name, value]) => sum + name.length + value.length + 4, 0);
}
