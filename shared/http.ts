/**
 * What every service serves over HTTP besides its own routes: `/health`, `/ready`, `/metrics`, and
 * the server itself, which logs the port it took (so `PORT=0` works).
 * @module
 */
import { Hono } from "hono";
import type { Broker } from "./broker.ts";
import type { Store } from "./store.ts";
import { routePath } from "hono/route";
import { HTTPException } from "hono/http-exception";
import { describeError, type Logger } from "./log.ts";
import type { OutageWatch } from "./outage.ts";
import {
  counter,
  histogram,
  httpMethodLabel,
  METRICS_CONTENT_TYPE,
  renderMetrics,
} from "./metrics.ts";
import { nameServerSpan } from "./tracing.ts";
import { redact } from "./redact.ts";

/** What `/ready` checks, and what answers a request that failed. */
export interface ServiceAppOptions {
  store: Store;
  broker: Broker;
  /** The store's outages: `/ready` reports a pause, and a request that meets one gets a 503. */
  outages: OutageWatch;
  log: Logger;
  /**
   * Requests of `routes` handled at once; the next ones are answered 503 with `Retry-After`, so that
   * a database falling behind makes clients wait outside rather than requests pile up inside.
   * `/health`, `/ready` and `/metrics` always answer. @default {no limit}
   */
  maxInFlight?: number;
  /**
   * How long a request of `routes` may take to send its whole body, in milliseconds, counted from
   * when it takes its slot: a slower one is answered 408, so that clients trickling bytes cannot
   * keep every slot of `maxInFlight`. @default {DEFAULT_BODY_TIMEOUT_MS}
   */
  bodyTimeoutMs?: number;
}

const httpRequests = counter("http_requests_total", "HTTP requests answered", [
  "method",
  "route",
  "status",
]);
const httpDuration = histogram("http_request_duration_seconds", "Time to answer an HTTP request", [
  "method",
  "route",
]);

/** How long a request may take to send its body, unless `HTTP_BODY_TIMEOUT` says otherwise. */
export const DEFAULT_BODY_TIMEOUT_MS = 10_000;

/** What a body read fails with once the request's body timeout has passed. */
export class BodyTimeoutError extends Error {
  override name = "BodyTimeoutError";
}

/**
 * The service's whole app: `GET /health` (the process answers), `GET /ready` (database and broker
 * work, every consumer subscribed), `GET /metrics` (Prometheus text), and the service's own
 * `routes`, every request counted and timed. A request that fails for an outage of the database,
 * or that finds `maxInFlight` requests in hand, is answered 503 with `Retry-After`; any other
 * failure 500; all as JSON.
 */
export function serviceApp(routes: Hono, options: ServiceAppOptions): Hono {
  const {
    store,
    broker,
    outages,
    log,
    maxInFlight = Infinity,
    bodyTimeoutMs = DEFAULT_BODY_TIMEOUT_MS,
  } = options;
  const app = new Hono();
  app.use(async function recordHttpMetrics(c, next) {
    const started = performance.now();
    await next();
    const matched = routePath(c, -1);
    // Both bounded: the method falls back to `other`, the route is a pattern of the app's own.
    const labels = {
      method: httpMethodLabel(c.req.method),
      route: matched === "/*" ? "unmatched" : matched,
    };
    nameServerSpan(labels.method, labels.route);
    httpRequests.inc({ ...labels, status: String(c.res.status) });
    httpDuration.observe(labels, (performance.now() - started) / 1000);
  });
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", async (c) => {
    const failed: Record<string, string> = {};
    // A full disk still answers the ping: a pause is what says the database cannot take writes.
    if (outages.reason) failed.database = `paused: ${outages.reason}`;
    else await store.ping().catch((error) => failed.database = describeError(error));
    if (!broker.connected) failed.broker = broker.lastError ?? "not connected";
    else if (broker.unattachedQueues.length > 0) {
      failed.broker = `not consuming ${broker.unattachedQueues.join(", ")} yet`;
    }
    // A driver's error may quote the URL it was given, password and all.
    for (const [part, why] of Object.entries(failed)) failed[part] = redact(why);
    const ok = Object.keys(failed).length === 0;
    return c.json({ status: ok ? "ready" : "not ready", failed }, ok ? 200 : 503);
  });
  app.get("/metrics", async (c) => {
    return c.body(await renderMetrics(), 200, { "content-type": METRICS_CONTENT_TYPE });
  });
  // After the routes above, which answer without calling on: they are never refused.
  let inFlight = 0;
  app.use(async function limitRequestsInFlight(c, next) {
    if (inFlight >= maxInFlight) {
      c.header("Retry-After", "1");
      return c.json({ error: `over ${maxInFlight} requests in flight, try again later` }, 503);
    }
    inFlight++;
    try {
      await next();
    } finally {
      inFlight--;
    }
  });
  app.use(async function limitBodyTime(c, next) {
    const body = c.req.raw.body;
    // A Request cannot carry a body for these methods (in any case: HTTP methods are case
    // sensitive, fetch's are not), and no route reads one: such a request is answered without it.
    if (!body || BODYLESS_METHODS.test(c.req.raw.method)) return await next();
    const timed = deadlineBody(body, bodyTimeoutMs);
    // From the parts, not from the request: copying its signal makes Deno warn of legacy aborts.
    const { url, method, headers } = c.req.raw;
    c.req.raw = new Request(
      url,
      { method, headers, body: timed.body, duplex: "half" } as RequestInit,
    );
    try {
      await next();
    } finally {
      timed.stop();
    }
    // A handler that swallowed the failed read answered for a body it never had.
    if (timed.expired() && c.res.status !== 408) c.res = bodyTimeoutResponse(bodyTimeoutMs);
  });
  app.route("/", routes);
  app.notFound(function answerUnmatched(c) {
    const allowed = allowedMethods(app, c.req.path);
    if (allowed.length === 0) return c.json({ error: `no such path: ${c.req.path}` }, 404);
    c.header("Allow", allowed.join(", "));
    return c.json({
      error: `${c.req.method} is not allowed on ${c.req.path}: use ${allowed.join(" or ")}`,
    }, 405);
  });
  app.onError(async function answerFailure(error, c) {
    if (error instanceof HTTPException) return error.getResponse();
    if (error instanceof BodyTimeoutError) return bodyTimeoutResponse(bodyTimeoutMs);
    if (await outages.report(error)) {
      // Its transaction rolled back whole, so nothing of the request was kept; a connection lost
      // during the COMMIT itself leaves that unknown, which a retry with an Idempotency-Key settles.
      c.header("Retry-After", String(outages.retryAfterSeconds));
      return c.json({ error: "the database is unavailable, try again later" }, 503);
    }
    log.error("request failed", {
      method: httpMethodLabel(c.req.method),
      path: c.req.path,
      error: describeError(error),
    });
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

/** The methods `new Request()` refuses a body for, or refuses altogether. */
const BODYLESS_METHODS = /^(GET|HEAD|CONNECT|TRACE|TRACK)$/i;

/** The JSON 408 of a request whose body took longer than `timeoutMs`. */
function bodyTimeoutResponse(timeoutMs: number): Response {
  return Response.json(
    { error: `the request body did not arrive within ${timeoutMs} ms` },
    { status: 408, headers: { connection: "close" } },
  );
}

/**
 * `body` as a stream that fails with {@linkcode BodyTimeoutError} when a read is still waiting for
 * bytes `timeoutMs` after this call, and gives the rest of `body` up. It reads only as its reader
 * asks (a handler that never reads a body is not cut off), so nothing beyond what the handler
 * takes is buffered.
 */
function deadlineBody(
  body: ReadableStream<Uint8Array>,
  timeoutMs: number,
): { body: ReadableStream<Uint8Array>; expired(): boolean; stop(): void } {
  const reader = body.getReader();
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BodyTimeoutError(`Cannot read the request body as it took over ${timeoutMs} ms`),
        ),
      timeoutMs,
    );
  });
  deadline.catch(() => {});
  const timed = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await Promise.race([reader.read(), deadline]);
      } catch (error) {
        if (error instanceof BodyTimeoutError) {
          expired = true;
          reader.cancel(error).catch(() => {});
        }
        throw error;
      }
      if (chunk.done) {
        clearTimeout(timer);
        controller.close();
      } else {
        controller.enqueue(chunk.value);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return { body: timed, expired: () => expired, stop: () => clearTimeout(timer) };
}

/** The methods of `app`'s routes whose path pattern matches `path`; HEAD wherever GET is. */
function allowedMethods(app: Hono, path: string): string[] {
  const methods = new Set<string>();
  for (const route of app.routes) {
    // Middleware is registered for ALL methods; it makes no path known.
    if (route.method === "ALL" || !patternOf(route.path).test(path)) continue;
    methods.add(route.method);
    if (route.method === "GET") methods.add("HEAD");
  }
  return [...methods];
}

/** A route path such as `/orders/:order_id/cancel` as a regular expression. */
function patternOf(routePath: string): RegExp {
  const source = routePath.split("/").map((segment) =>
    segment.startsWith(":")
      ? "[^/]+"
      : segment === "*"
      ? ".*"
      : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  ).join("/");
  return new RegExp(`^${source}/?$`);
}

/** A running HTTP server. */
export interface HttpServer {
  port: number;
  /** Stops accepting requests and waits for those in flight. */
  shutdown(): Promise<void>;
}

/** Options for {@linkcode serveHttp}. */
export interface ServeHttpOptions {
  /**
   * The address to listen on (`HTTP_HOST`): `0.0.0.0` for every interface.
   * @default {"127.0.0.1": only this machine reaches a service started without a host}
   */
  hostname?: string;
}

/**
 * Serves `app` on `port` (0 picks a free one) and logs `listening` with the host and the port.
 */
export function serveHttp(
  app: Hono,
  port: number,
  log: Logger,
  options: ServeHttpOptions = {},
): HttpServer {
  const { hostname = "127.0.0.1" } = options;
  const server = Deno.serve({
    port,
    hostname,
    onListen: ({ hostname, port }) => log.info("listening", { host: hostname, port }),
  }, app.fetch);
  return { port: server.addr.port, shutdown: () => server.shutdown() };
}
