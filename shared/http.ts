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
import { metrics, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
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
}

/**
 * The service's whole app: `GET /health` (the process answers), `GET /ready` (database and broker
 * work, every consumer subscribed), `GET /metrics` (Prometheus text), and the service's own
 * `routes`, every request counted and timed. A request that fails for an outage of the database,
 * or that finds `maxInFlight` requests in hand, is answered 503 with `Retry-After`; any other
 * failure 500; all as JSON.
 */
export function serviceApp(routes: Hono, options: ServiceAppOptions): Hono {
  const { store, broker, outages, log, maxInFlight = Infinity } = options;
  const app = new Hono();
  app.use(async function recordHttpMetrics(c, next) {
    const started = performance.now();
    await next();
    const matched = routePath(c, -1);
    const labels = { method: c.req.method, route: matched === "/*" ? "unmatched" : matched };
    nameServerSpan(labels.method, labels.route);
    metrics.httpRequests.inc({ ...labels, status: String(c.res.status) });
    metrics.httpDuration.observe(labels, (performance.now() - started) / 1000);
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
    if (await outages.report(error)) {
      // Its transaction rolled back whole, so nothing of the request was kept; a connection lost
      // during the COMMIT itself leaves that unknown, which a retry with an Idempotency-Key settles.
      c.header("Retry-After", String(outages.retryAfterSeconds));
      return c.json({ error: "the database is unavailable, try again later" }, 503);
    }
    log.error("request failed", {
      method: c.req.method,
      path: c.req.path,
      error: describeError(error),
    });
    return c.json({ error: "internal error" }, 500);
  });
  return app;
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

/** Serves `app` on `port` (0 picks a free one) and logs `listening` with the port. */
export function serveHttp(app: Hono, port: number, log: Logger): HttpServer {
  const server = Deno.serve({
    port,
    hostname: "0.0.0.0",
    onListen: ({ port }) => log.info("listening", { port }),
  }, app.fetch);
  return { port: server.addr.port, shutdown: () => server.shutdown() };
}
