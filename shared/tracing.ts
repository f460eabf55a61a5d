/**
 * OpenTelemetry spans for an order's whole path: the request, the relay's publish of each outbox
 * row (a PRODUCER span under the `traceparent` stored with the row), each consumer's handling of
 * each message (a CONSUMER span under the publish), each batch's transaction, and a DLQ replay (a
 * new trace linked to the original). Attributes follow OpenTelemetry's messaging conventions.
 *
 * Deno exports the spans when it runs with `OTEL_DENO=true`; the API then needs no SDK. Without
 * it, every function here takes its untraced path after one branch, and the `traceparent` still
 * travels for the log lines' `trace_id`, as `traceparent.ts` makes it. See `docs/tracing.md`.
 * @module
 */
import type { Attributes, Context, Span } from "@opentelemetry/api";
import type { OutgoingMessage } from "./broker.ts";
import type { Delivery, Settlement } from "./delivery.ts";
import { childTraceparent, traceIdOf } from "./traceparent.ts";

// Deno exports telemetry with `OTEL_DENO=true` and no other spelling. The module is loaded only
// then: a service without tracing does not carry its memory.
const otel = otelEnabled() ? await import("@opentelemetry/api") : undefined;
const tracer = otel?.trace.getTracer("campus-food");

/**
 * The `traceparent` to store with an event written now: the active span's (the request's, say)
 * or, without tracing, a new span id in the trace of `parent` (a new trace without one).
 */
export function currentTraceparent(parent?: unknown): string {
  const span = otel?.trace.getActiveSpan();
  return span ? traceparentOf(span) : childTraceparent(parent);
}

/** Gives the active HTTP server span (Deno's) the name and `http.route` of the matched route. */
export function nameServerSpan(method: string, route: string): void {
  const span = otel?.trace.getActiveSpan();
  span?.updateName(`${method} ${route}`);
  span?.setAttribute("http.route", route);
}

/** Runs `work` in a span of its own under the active one, marked as failed if it throws. */
export function inSpan<T>(name: string, work: () => Promise<T>): Promise<T> {
  if (!tracer) return work();
  return tracer.startActiveSpan(name, (span) => settle([span], work()));
}

/**
 * Publishes `messages` through `publish`, each under a PRODUCER span whose parent is the
 * `traceparent` it carries and which it carries instead; the spans end with the confirms.
 */
export function publishTraced(
  messages: OutgoingMessage[],
  publish: (messages: OutgoingMessage[]) => Promise<void>,
): Promise<void> {
  if (!tracer) return publish(messages);
  const spans: Span[] = [];
  const traced = messages.map((message) => {
    const span = tracer.startSpan(`publish ${destination(message)}`, {
      kind: otel!.SpanKind.PRODUCER,
      attributes: producerAttributes(message),
    }, parentOf(message.headers));
    spans.push(span);
    return { ...message, headers: { ...message.headers, traceparent: traceparentOf(span) } };
  });
  return settle(spans, publish(traced));
}

/** Where {@linkcode replayTraced} sends a dead letter, and how. */
export interface ReplayOptions {
  exchange: string;
  routingKey: string;
  /** The DLQ it was taken from. */
  from: string;
  /** Republishes the message with `headers` added. */
  forward(headers: Record<string, string>): Promise<void>;
}

/**
 * Republishes a dead letter: with tracing, under a PRODUCER span that starts a new trace (a replay
 * is an operator's new action) linked to the message's trace, whose `traceparent` it then carries;
 * without, adding no header, so that the message keeps its trace.
 */
export function replayTraced(delivery: Delivery, options: ReplayOptions): Promise<void> {
  const { exchange, routingKey, from, forward } = options;
  if (!tracer) return forward({});
  const original = otel!.trace.getSpanContext(parentOf(delivery.headers));
  const { messageId, correlationId } = delivery;
  const message = { exchange, routingKey, messageId, correlationId };
  const span = tracer.startSpan(`publish ${destination(message)}`, {
    kind: otel!.SpanKind.PRODUCER,
    attributes: { ...producerAttributes(message), "campus_food.replayed_from": from },
    links: original ? [{ context: original }] : [],
  }, otel!.ROOT_CONTEXT);
  return settle([span], forward({ traceparent: traceparentOf(span) }));
}

/** One delivery's handling: its trace context, and its CONSUMER span while tracing. */
export class MessageTrace {
  /** What the message causes carries this: the span's context, or a new span id in its trace. */
  readonly traceparent: string;
  /** For log lines: `trace_id`. */
  readonly traceId: string;
  readonly #queue: string;
  readonly #span?: Span;

  /** Starts the handling of `delivery`, taken from `queue`. */
  constructor(queue: string, delivery: Delivery) {
    const { headers } = delivery;
    this.#queue = queue;
    if (tracer) {
      this.#span = tracer.startSpan(`process ${queue}`, {
        kind: otel!.SpanKind.CONSUMER,
        attributes: consumerAttributes(queue, delivery),
      }, parentOf(headers));
      this.traceparent = traceparentOf(this.#span);
    } else {
      this.traceparent = childTraceparent(headers.traceparent);
    }
    this.traceId = traceIdOf(this.traceparent)!;
  }

  /** Records something that happened to the message: a retry scheduled, say. */
  event(name: string, attributes: Attributes = {}): void {
    this.#span?.addEvent(name, attributes);
  }

  /** Marks the handling as failed by `error`. */
  fail(error: unknown): void {
    if (this.#span) markFailed(this.#span, error);
  }

  /** Ends the span with what became of the message: a dead-lettering or a requeue is an event. */
  end(settlement?: Settlement): void {
    const span = this.#span;
    if (!span) return;
    if (settlement?.action === "dead-letter") {
      span.addEvent("dead-lettered", { "campus_food.reason": settlement.reason });
      span.setStatus({ code: otel!.SpanStatusCode.ERROR, message: settlement.reason });
    } else if (settlement?.action === "requeue") {
      span.addEvent("requeued", { "campus_food.reason": settlement.error });
    }
    span.end();
  }

  /**
   * Runs `work`, the transaction of the messages of `traces` (of one queue), in one span: a child
   * of the first message's span (a span has one parent) and linked to the others'.
   */
  static commit<T>(traces: MessageTrace[], work: () => Promise<T>): Promise<T> {
    const [first, ...others] = traces.map((one) => one.#span);
    if (!tracer || !first) return work();
    const { context, SpanKind, trace } = otel!;
    const queue = traces[0].#queue;
    const span = tracer.startSpan(`commit ${queue}`, {
      kind: SpanKind.INTERNAL,
      attributes: {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": queue,
        "messaging.operation.type": "process",
        "messaging.batch.message_count": traces.length,
      },
      links: others.map((other) => ({ context: other!.spanContext() })),
    }, trace.setSpan(context.active(), first));
    return settle([span], work());
  }
}

function otelEnabled(): boolean {
  const { state } = Deno.permissions.querySync({ name: "env", variable: "OTEL_DENO" });
  return state === "granted" && Deno.env.get("OTEL_DENO") === "true";
}

/** Ends `spans` once `work` settles, as failed if it rejects; resolves or rejects as it does. */
async function settle<T>(spans: Span[], work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    for (const span of spans) markFailed(span, error);
    throw error;
  } finally {
    for (const span of spans) span.end();
  }
}

function markFailed(span: Span, error: unknown): void {
  const failure = error instanceof Error ? error : new Error(String(error));
  span.recordException(failure);
  span.setAttribute("error.type", failure.name);
  span.setStatus({ code: otel!.SpanStatusCode.ERROR, message: failure.message });
}

function traceparentOf(span: Span): string {
  const carrier: Record<string, string> = {};
  const { propagation, ROOT_CONTEXT, trace } = otel!;
  propagation.inject(trace.setSpan(ROOT_CONTEXT, span), carrier);
  return carrier.traceparent;
}

/** The context of a message's `traceparent` header, or none: a span there starts a new trace. */
function parentOf(headers: Record<string, unknown> = {}): Context {
  const { propagation, ROOT_CONTEXT } = otel!;
  return typeof headers.traceparent === "string"
    ? propagation.extract(ROOT_CONTEXT, { traceparent: headers.traceparent })
    : ROOT_CONTEXT;
}

interface MessageFields {
  exchange: string;
  routingKey: string;
  messageId?: string;
  correlationId?: string;
}

/** RabbitMQ's destination as the conventions name it: `exchange:routing key`, empty parts left out. */
function destination({ exchange, routingKey }: MessageFields, queue?: string): string {
  const parts = [exchange, routingKey];
  if (queue !== undefined && queue !== routingKey) parts.push(queue);
  return parts.filter(Boolean).join(":") || "amq.default";
}

function messageAttributes(message: MessageFields, queue?: string): Attributes {
  return {
    "messaging.system": "rabbitmq",
    "messaging.destination.name": destination(message, queue),
    "messaging.rabbitmq.destination.routing_key": message.routingKey,
    "messaging.message.id": message.messageId ?? "",
    "messaging.message.conversation_id": message.correlationId ?? "",
  };
}

function producerAttributes(message: MessageFields): Attributes {
  return {
    ...messageAttributes(message),
    "messaging.operation.type": "send",
    "messaging.operation.name": "publish",
  };
}

function consumerAttributes(queue: string, delivery: Delivery): Attributes {
  // A retry comes back through the default exchange; the headers keep where it was published.
  const { headers } = delivery;
  const published = {
    ...delivery,
    exchange: String(headers["x-original-exchange"] ?? delivery.exchange),
    routingKey: String(headers["x-original-routing-key"] ?? delivery.routingKey),
  };
  return {
    ...messageAttributes(published, queue),
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
  };
}
