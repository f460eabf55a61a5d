/**
 * A small OpenTelemetry collector for tests: an OTLP/HTTP receiver (JSON protocol) on a free port
 * that keeps every span it is sent, and renders a trace as a compact tree. Logs and metrics are
 * accepted and dropped.
 * @module
 */

/** A span as received, its OTLP/JSON flattened: attribute values are plain values. */
export interface ReceivedSpan {
  /** The `service.name` of the resource that sent it. */
  service: string;
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: SpanKindName;
  /** Milliseconds since the epoch. */
  startMs: number;
  endMs: number;
  attributes: Record<string, unknown>;
  events: Array<{ name: string; attributes: Record<string, unknown> }>;
  links: Array<{ traceId: string; spanId: string }>;
  status: { code: "unset" | "ok" | "error"; message: string };
}

export type SpanKindName =
  | "unspecified"
  | "internal"
  | "server"
  | "client"
  | "producer"
  | "consumer";

const KINDS: readonly SpanKindName[] = [
  "unspecified",
  "internal",
  "server",
  "client",
  "producer",
  "consumer",
];
const STATUSES = ["unset", "ok", "error"] as const;

/** A running receiver. */
export interface OtlpReceiver {
  /** What `OTEL_EXPORTER_OTLP_ENDPOINT` must be for a program to export here. */
  url: string;
  /** Every span received so far, in the order received. */
  readonly spans: ReceivedSpan[];
  /** The spans received so far of the trace `traceId`. */
  trace(traceId: string): ReceivedSpan[];
  close(): Promise<void>;
}

/** Starts a receiver on a free port of 127.0.0.1. */
export function startOtlpReceiver(): OtlpReceiver {
  const spans: ReceivedSpan[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const { pathname } = new URL(request.url);
    if (request.method !== "POST") return new Response(null, { status: 405 });
    if (!request.headers.get("content-type")?.startsWith("application/json")) {
      return new Response("only OTLP/JSON: set OTEL_EXPORTER_OTLP_PROTOCOL=http/json", {
        status: 415,
      });
    }
    const body = await request.json();
    if (pathname === "/v1/traces") spans.push(...flattenSpans(body));
    return Response.json({});
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    spans,
    trace: (traceId) => spans.filter((span) => span.traceId === traceId),
    close: () => server.shutdown(),
  };
}

interface OtlpValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: OtlpValue[] };
}
type OtlpAttributes = Array<{ key: string; value: OtlpValue }> | undefined;

function valueOf(value: OtlpValue): unknown {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.arrayValue?.values?.map(valueOf);
}

function attributesOf(attributes: OtlpAttributes): Record<string, unknown> {
  return Object.fromEntries((attributes ?? []).map(({ key, value }) => [key, valueOf(value)]));
}

/** The spans of one OTLP `ExportTraceServiceRequest` in JSON. */
// deno-lint-ignore no-explicit-any
export function flattenSpans(request: any): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const { resource, scopeSpans } of request.resourceSpans ?? []) {
    const service = String(attributesOf(resource?.attributes)["service.name"] ?? "");
    for (const scope of scopeSpans ?? []) {
      for (const span of scope.spans ?? []) {
        spans.push({
          service,
          traceId: span.traceId,
          spanId: span.spanId,
          parentSpanId: span.parentSpanId ?? "",
          name: span.name,
          kind: KINDS[span.kind ?? 0] ?? "unspecified",
          startMs: Number(BigInt(span.startTimeUnixNano) / 1000n) / 1000,
          endMs: Number(BigInt(span.endTimeUnixNano) / 1000n) / 1000,
          attributes: attributesOf(span.attributes),
          // deno-lint-ignore no-explicit-any
          events: (span.events ?? []).map((event: any) => ({
            name: event.name,
            attributes: attributesOf(event.attributes),
          })),
          // deno-lint-ignore no-explicit-any
          links: (span.links ?? []).map((link: any) => ({
            traceId: link.traceId,
            spanId: link.spanId,
          })),
          status: {
            code: STATUSES[span.status?.code ?? 0] ?? "unset",
            message: span.status?.message ?? "",
          },
        });
      }
    }
  }
  return spans;
}

/**
 * Renders `spans` (one trace) as a tree, children in the order they started: per span its
 * service, kind, start after the first span and duration, then its events, links and status.
 */
export function renderTraceTree(spans: readonly ReceivedSpan[]): string {
  const ids = new Set(spans.map((span) => span.spanId));
  const byStart = [...spans].sort((a, b) => a.startMs - b.startMs);
  const origin = byStart[0]?.startMs ?? 0;
  const lines: string[] = [];
  function render(span: ReceivedSpan, indent: string, branch: string): void {
    const timing = `+${(span.startMs - origin).toFixed(1)} ms, ${
      (span.endMs - span.startMs).toFixed(1)
    } ms`;
    lines.push(`${indent}${branch}${span.name}  [${span.service} ${span.kind}] ${timing}`);
    const childIndent = indent + (branch === "├─ " ? "│  " : branch ? "   " : "");
    const children = byStart.filter((child) => child.parentSpanId === span.spanId);
    const notes = [
      ...span.events.map((event) => `event ${event.name}${describeAttributes(event.attributes)}`),
      ...span.links.map((link) => `link to trace ${link.traceId}`),
      ...(span.status.code === "error" ? [`status ERROR: ${span.status.message}`] : []),
    ];
    for (const note of notes) lines.push(`${childIndent}${children.length ? "│" : " "}  · ${note}`);
    children.forEach((child, i) =>
      render(child, childIndent, i === children.length - 1 ? "└─ " : "├─ ")
    );
  }
  for (const root of byStart.filter((span) => !ids.has(span.parentSpanId))) render(root, "", "");
  return lines.join("\n");
}

function describeAttributes(attributes: Record<string, unknown>): string {
  const shown = Object.entries(attributes)
    .filter(([key]) => key !== "exception.stacktrace")
    .map(([key, value]) => `${key}=${JSON.stringify(value)}`);
  return shown.length ? ` (${shown.join(", ")})` : "";
}
