/**
 * What every service serves over HTTP besides its own routes: `/health`, `/ready`, `/metrics`, and
 * the server itself, which logs the port it took (so `PORT=0` works).
 * @module
 */
import { Hono } from "hono";
import type { Broker } from "./broker.ts";
import type { Store } from "./store.ts";
import { routePath } from "hono/route";
import { describeError, type Logger } from "./log.ts";
import { metrics, METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";

/** What `/ready` checks. */
export interface Probes {
  store: Store;
  broker: Broker;
}

/**
 * The service's whole app: `GET /health` (the process answers), `GET /ready` (database and broker
 * work), `GET /metrics` (Prometheus text), and the service's own `routes`, every request counted
 * and timed.
 */
export function serviceApp(routes: Hono, probes: Probes): Hono {
  const app = new Hono();
  app.use(async function recordHttpMetrics(c, next) {
    const started = performance.now();
    await next();
    const matched = routePath(c, -1);
    const labels = { method: c.req.method, route: matched === "/*" ? "unmatched" : matched };
    metrics.httpRequests.inc({ ...labels, status: String(c.res.status) });
    metrics.httpDuration.observe(labels, (performance.now() - started) / 1000);
  });
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", async (c) => {
    const failed: Record<string, string> = {};
    await probes.store.ping().catch((error) => failed.database = describeError(error));
    if (!probes.broker.connected) failed.broker = probes.broker.lastError ?? "not connected";
    const ok = Object.keys(failed).length === 0;
    return c.json({ status: ok ? "ready" : "not ready", failed }, ok ? 200 : 503);
  });
  app.get("/metrics", async (c) => {
    return c.body(await renderMetrics(), 200, { "content-type": METRICS_CONTENT_TYPE });
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
