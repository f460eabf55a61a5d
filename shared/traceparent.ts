/**
 * W3C trace context: a `traceparent` is taken from the HTTP request (or started there), carried in
 * the headers of every message the order causes, and logged as `trace_id`, so one order can be
 * followed through all three services.
 * @module
 */

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_SPAN_ID = "0".repeat(16);

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
  if (typeof traceparent !== "string" || !TRACEPARENT.test(traceparent)) return undefined;
  const traceId = traceparent.slice(3, 35);
  if (traceId === ZERO_TRACE_ID || traceparent.slice(36, 52) === ZERO_SPAN_ID) return undefined;
  return traceId;
}

/**
 * A new span in the trace of `parent` (a `traceparent` header value), or in a new trace when
 * `parent` is missing or invalid.
 */
export function childTraceparent(parent?: unknown): string {
  const traceId = traceIdOf(parent);
  // A valid parent ends with its two hex digits of flags.
  const flags = traceId ? (parent as string).slice(-2) : "01";
  return `00-${traceId ?? randomHex(16)}-${randomHex(8)}-${flags}`;
}
