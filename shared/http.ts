/**
 * What every service serves over HTTP besides its own routes: `/health`, `/ready`, and the server
 * itself, which logs the port it took (so `PORT=0` works).
 * @module
 */
import { Hono } from "hono";
import type { Broker } from "./broker.ts";
import type { Store } from "./store.ts";
import type { Logger } from "./log.ts";
import { describeError } from "./log.ts";

/** What `/ready` checks. */
export interface Probes {
  store: Store;
  broker: Broker;
}

/** Adds `GET /health` (the process answers) and `GET /ready` (database and broker work) to `app`. */
export function addProbes(app: Hono, probes: Probes): Hono {
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/ready", async (c) => {
    const failed: Record<string, string> = {};
    await probes.store.ping().catch((error) => failed.database = describeError(error));
    if (!probes.broker.connected) failed.broker = probes.broker.lastError ?? "not connected";
    const ok = Object.keys(failed).length === 0;
    return c.json({ status: ok ? "ready" : "not ready", failed }, ok ? 200 : 503);
  });
  return app;
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
