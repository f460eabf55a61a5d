/**
 * W3C trace context: a `traceparent` is taken from the HTTP request (or started there), carried in
 * the headers of every message the order causes, and logged as `trace_id`, so one order can be
 * followed through all three services.
 * @module
 */

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

// Called for every message a service handles or publishes: one small buffer and the string, rather
// than an array of strings per call.
function randomHex(bytes: number): string {
  let hex = "";
  for (const byte of crypto.getRandomValues(new Uint8Array(bytes))) hex += HEX[byte];
  return hex;
}

/** The trace id of a valid `traceparent`, else undefined. */
export function traceIdOf(traceparent: unknown): string | undefined {
  const match = typeof traceparent === "string" ? TRACEPARENT.exec(traceparent) : null;
  if (!match || /^0+$/.test(match[1]) || /^0+$/.test(match[2])) return undefined;
  return match[1];
}

/**
 * A new span in the trace of `parent` (a `traceparent` header value), or in a new trace when
 * `parent` is missing or invalid.
 */
export function childTraceparent(parent?: unknown): string {
  const traceId = traceIdOf(parent) ?? randomHex(16);
  const flags = typeof parent === "string" && traceIdOf(parent) ? parent.slice(-2) : "01";
  return `00-${traceId}-${randomHex(8)}-${flags}`;
}
