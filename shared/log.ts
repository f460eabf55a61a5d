/**
 * Structured logging: one event per line, a JSON object outside a terminal and a readable line in one.
 * @module
 */
import { redact } from "./redact.ts";

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Fields that go with a log line: `order_id`, `event_id` and the like. */
export type LogFields = Record<string, unknown>;

/** Writes log lines for one service. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lines below this level are dropped. @default {"info"} */
  level?: LogLevel;
  /** @default {"pretty" on a terminal, else "json"} */
  format?: "json" | "pretty";
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const COLOUR: Record<LogLevel, string> = {
  debug: "\x1b[90m",
  info: "\x1b[32m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
};

const encoder = new TextEncoder();
// Lines written in one run of the event loop (a batch's worth) go out in one write, at the end of
// that run; warnings and errors go at once, with whatever waits before them.
let unwritten = "";

function flushLines(): void {
  if (unwritten === "") return;
  let bytes = encoder.encode(unwritten);
  unwritten = "";
  while (bytes.length > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
}

// Deno.exit() dispatches "unload" but runs no more microtasks.
globalThis.addEventListener("unload", flushLines);

/** Creates the logger of `service`, writing to stdout. */
export function createLogger(service: string, options: LoggerOptions = {}): Logger {
  const { level = "info", format = Deno.stdout.isTerminal() ? "pretty" : "json" } = options;
  function write(lineLevel: LogLevel, msg: string, fields: LogFields = {}): void {
    if (RANK[lineLevel] < RANK[level]) return;
    const record = { time: new Date().toISOString(), level: lineLevel, service, msg, ...fields };
    // Whatever a field holds, a library's error quoting a URL say, no password leaves the process.
    const line = format === "json" ? JSON.stringify(record, safeReplacer) : renderPretty(record);
    if (unwritten === "") queueMicrotask(flushLines);
    unwritten += line + "\n";
    if (RANK[lineLevel] >= RANK.warn) flushLines();
  }
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
  };
}

/**
 * Renders one JSON log record as a coloured line: `inventory info reserved stock order_id=…`.
 * A record without `service` renders without it, for a caller that prefixes lines itself. Every
 * password is hidden, as in a JSON line, and every control character escaped: a value a client
 * chose (a SKU, say) can neither start a forged line nor drive the terminal.
 */
export function renderPretty(record: Record<string, unknown>): string {
  const { time, level, service, msg, ...fields } = record;
  const lineLevel = (level as LogLevel) in COLOUR ? level as LogLevel : "info";
  const clock = typeof time === "string" ? printable(time.slice(11, 23)) : "";
  const shown = (value: unknown) =>
    printable(
      redact(typeof value === "string" ? value : JSON.stringify(value, errorReplacer) ?? ""),
    );
  const rest = Object.entries(fields).map(([key, value]) => `${shown(key)}=${shown(value)}`)
    .join(" ");
  const parts = [
    `\x1b[90m${clock}\x1b[0m`,
    service === undefined ? "" : shown(service),
    `${COLOUR[lineLevel]}${lineLevel}\x1b[0m`,
    msg === undefined ? "" : shown(msg),
    rest,
  ];
  return parts.filter(Boolean).join(" ");
}

/**
 * Control characters (C0, DEL, C1), line and paragraph separators and bidirectional overrides,
 * which could end a line early, move the cursor or reorder what a reader sees.
 */
// deno-lint-ignore no-control-regex -- matching them is the point
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character written as an escape (`\n`, `\u001b`), for a terminal. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (char) => {
    const escaped = JSON.stringify(char).slice(1, -1);
    return escaped.length > 1 ? escaped : `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
  });
}

/** Describes an error for a log line: its message and, after a colon, its causes. */
export function describeError(error: unknown): string {
  return errorChain(error).map((e) => e instanceof Error ? e.message : String(e)).join(": ");
}

/** `error` and its causes (up to five), outermost first. */
export function errorChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e: unknown = error; e !== undefined && chain.length < 5; e = (e as Error).cause) {
    chain.push(e);
    if (!(e instanceof Error)) break;
  }
  return chain;
}

function errorReplacer(_key: string, value: unknown): unknown {
  return value instanceof Error ? describeError(value) : value;
}

/** As {@linkcode errorReplacer}, and every string with its passwords hidden. */
function safeReplacer(key: string, value: unknown): unknown {
  const replaced = errorReplacer(key, value);
  return typeof replaced === "string" ? redact(replaced) : replaced;
}
