/**
 * What the fuzzer proves. Of every answer: never a 5xx; a 2xx or 4xx as the contract says of the
 * request; every 4xx a JSON object with an `error` string, and a 405 with `Allow`. After a run:
 * the order service stored exactly the orders it accepted, the broker carried events for those
 * orders only, no metric label took a value per client-chosen name, and memory stayed flat.
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import type { Expectation } from "./fuzz_cases.ts";
import type { WireAnswer } from "./fuzz_wire.ts";
// The services' own list: a metric labels these by name, every other method as `other`.
import { STANDARD_METHODS } from "../../shared/metrics.ts";

/**
 * Why `answer` breaks the contract for a request expected to be `expected`, sent as `method`, or
 * undefined when it keeps it.
 */
export function answerViolation(
  answer: WireAnswer,
  expected: Expectation,
  method: string,
): string | undefined {
  const { status } = answer;
  if (status >= 500) return `a ${status}: a client's input must never make a service fail`;
  const success = status >= 200 && status < 300;
  const refusal = status >= 400 && status < 500;
  if (!success && !refusal) return `a ${status}, neither a 2xx nor a 4xx`;
  if (expected === "accept" && !success) return `a ${status} for a request the contract takes`;
  if ((expected === "refuse" || expected === "server refuses") && !refusal) {
    return `a ${status} for a request the contract refuses`;
  }
  // Deno's HTTP server answers invalid HTTP itself, with an empty 400, before any service code.
  if (!refusal || expected === "server refuses") return undefined;
  const contentType = answer.headers["content-type"] ?? "";
  if (!/^application\/json\s*(;|$)/i.test(contentType)) {
    return `a ${status} with content-type ${JSON.stringify(contentType)}, not application/json`;
  }
  if (status === 405 && !answer.headers["allow"]) return "a 405 without an Allow header";
  if (method === "HEAD") return undefined;
  const text = new TextDecoder().decode(answer.body);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return `a ${status} whose body is not JSON: ${JSON.stringify(text.slice(0, 200))}`;
  }
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error !== "string" || error.length === 0) {
    return `a ${status} whose JSON has no "error" string: ${text.slice(0, 200)}`;
  }
  return undefined;
}

/** The ids of the orders in the order service's SQLite file under `dataDir`. */
export function storedOrderIds(dataDir: string): Set<string> {
  const database = new DatabaseSync(join(dataDir, "order.db"), { readOnly: true });
  try {
    const rows = database.prepare("SELECT order_id FROM orders").all() as Array<
      { order_id: string }
    >;
    return new Set(rows.map((row) => row.order_id));
  } finally {
    database.close();
  }
}

/** What differs between the orders accepted with a 202 and the orders stored. */
export function storageViolations(accepted: ReadonlySet<string>, stored: Set<string>): string[] {
  const extra = [...stored].filter((id) => !accepted.has(id));
  const missing = [...accepted].filter((id) => !stored.has(id));
  return [
    ...extra.length > 0
      ? [
        `${extra.length} orders stored that no 202 announced, e.g. ${extra.slice(0, 3).join(", ")}`,
      ]
      : [],
    ...missing.length > 0
      ? [`${missing.length} accepted orders not stored, e.g. ${missing.slice(0, 3).join(", ")}`]
      : [],
  ];
}

/** An event as the tap saw it. */
export interface TappedEvent {
  type?: string;
  correlationId?: string;
}

/** Events about orders that were never accepted, and accepted orders without an `OrderPlaced`. */
export function publishingViolations(
  accepted: ReadonlySet<string>,
  events: readonly TappedEvent[],
): string[] {
  const stray = events.filter((event) => !accepted.has(event.correlationId ?? ""));
  const placed = new Set(
    events.filter((event) => event.type === "OrderPlaced").map((event) => event.correlationId),
  );
  const unannounced = [...accepted].filter((id) => !placed.has(id));
  return [
    ...stray.length > 0
      ? [
        `${stray.length} events about orders never accepted, e.g. ${
          stray.slice(0, 3).map((e) => `${e.type} ${e.correlationId}`).join(", ")
        }`,
      ]
      : [],
    ...unannounced.length > 0
      ? [`${unannounced.length} accepted orders without an OrderPlaced, e.g. ${unannounced[0]}`]
      : [],
  ];
}

/** The most values one metric label may take: a route, a status, a queue; never a client's name. */
export const MAX_LABEL_VALUES = 32;

/** The largest `/metrics` page that still says "bounded", in bytes. */
export const MAX_METRICS_BYTES = 512 * 1024;

/**
 * Labels of the Prometheus text `text` that took a value per client input: a `method` that is not
 * a standard method or `other`, a label with over {@linkcode MAX_LABEL_VALUES} values, a page over
 * {@linkcode MAX_METRICS_BYTES}.
 */
export function metricsViolations(text: string): string[] {
  const values = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const name = line.slice(0, line.search(/[{ ]/)).replace(/_(bucket|sum|count)$/, "");
    for (const [, label, value] of line.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      if (label === "le") continue;
      const key = `${name}{${label}}`;
      if (!values.has(key)) values.set(key, new Set());
      values.get(key)!.add(value);
    }
  }
  const violations: string[] = [];
  for (const [key, set] of values) {
    if (key.endsWith("{method}")) {
      const odd = [...set].filter((m) => !STANDARD_METHODS.has(m) && m !== "other");
      if (odd.length > 0) {
        violations.push(
          `${key} has ${odd.length} values beyond the standard methods and "other", e.g. ${
            odd.slice(0, 3).map((m) => JSON.stringify(m.slice(0, 40))).join(", ")
          }`,
        );
      }
    }
    if (set.size > MAX_LABEL_VALUES) violations.push(`${key} has ${set.size} values`);
  }
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > MAX_METRICS_BYTES) violations.push(`/metrics is ${bytes} bytes`);
  return violations;
}

/** Resident memory (`VmRSS`) of process `pid`, in MB, or undefined when it is gone. */
export async function residentMb(pid: number): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    return Number.isFinite(kib) ? Math.round(kib / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}
