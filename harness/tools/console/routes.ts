/**
 * The console's HTTP interface: the page, its live updates over server-sent events, its two
 * assets, and one POST per action. A POST answers JSON to the page's script, and sends a browser
 * without it back to the page. With `auth` set, every POST needs a bearer token with the `admin`
 * role, checked as the services check theirs; the page and its updates stay open to read.
 * @module
 */
import { type Context, Hono } from "hono";
import { csrf } from "hono/csrf";
import { streamSSE } from "hono/streaming";
import {
  ADMIN_ROLE,
  type AuthConfig,
  authenticate,
  bearerTokenOf,
  callerOf,
  requireRole,
} from "../../../shared/auth.ts";
import { type Queue, QUEUES } from "../../../shared/topology.ts";
import { type ServiceName, SERVICES } from "../../lib/service_process.ts";
import * as actions from "./actions.ts";
import type { ActionAnswer, ActionContext, Asker } from "./actions.ts";
import { Page } from "./page.tsx";
import type { PanelFeed } from "./panel_feed.ts";

/** What {@linkcode consoleApp} serves. */
export interface ConsoleAppOptions extends ActionContext {
  panels: PanelFeed;
  /** The page's script and style sheet, by file name. */
  assets: ReadonlyMap<string, string>;
  /**
   * Answer only requests whose `Host` is this machine: a console bound to loopback is then out of
   * reach of a web page that renames its own host to 127.0.0.1 (DNS rebinding). @default {true}
   */
  loopbackOnly?: boolean;
  /** Ends every event stream, so that the server can shut down. */
  closing: AbortSignal;
  /** How the bearer tokens of actions are checked. @default {not at all: anyone may act} */
  auth?: AuthConfig;
}

const CONTENT_TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** The console's app, over the live picture and actions of `options`. */
export function consoleApp(options: ConsoleAppOptions): Hono {
  const { panels, assets, loopbackOnly = true, closing, auth } = options;
  const app = new Hono();
  app.use(async function refuseForeignHosts(c, next) {
    const host = new URL(c.req.url).hostname;
    if (loopbackOnly && !LOOPBACK_HOSTS.has(host)) {
      return c.text(`This console answers on 127.0.0.1 or localhost, not on ${host}`, 403);
    }
    await next();
  });
  // A form on another site must not be able to stop a service or replay a DLQ from a browser.
  app.use(csrf());
  // Every action changes the system: under authentication only an admin may ask for one. Without
  // it nothing is said, as the console is a local tool then, as it always was.
  app.post(
    "*",
    authenticate(auth, { log: auth && options.log }),
    requireRole(ADMIN_ROLE),
  );

  const page = (c: Context) =>
    c.html(`<!doctype html>${Page({ snapshot: options.live.snapshot(), askToken: !!auth })}`);
  app.get("/", page);
  app.get("/assets/:file", (c) => {
    const file = c.req.param("file");
    const text = assets.get(file);
    if (text === undefined) return c.text("no such asset", 404);
    return c.body(text, 200, { "content-type": CONTENT_TYPES[file.split(".").at(-1)!] });
  });
  app.get("/events", (c) =>
    streamSSE(c, async function streamPanels(stream) {
      // One write at a time. A page that reads slowly gets the latest of each panel, not a
      // backlog of every reading.
      let pending = new Map<string, string>();
      let writing = false;
      async function flush(): Promise<void> {
        if (writing) return;
        writing = true;
        try {
          while (pending.size > 0) {
            const panels = Object.fromEntries(pending);
            pending = new Map();
            await stream.writeSSE({ event: "panels", data: JSON.stringify(panels) });
          }
        } catch {
          // The page went away; onAbort ends the stream.
        } finally {
          writing = false;
        }
      }
      const send = (changed: ReadonlyMap<string, string>) => {
        for (const [id, html] of changed) pending.set(id, html);
        flush();
      };
      const closed = new Promise<void>((resolve) => {
        stream.onAbort(resolve);
        if (closing.aborted) resolve();
        closing.addEventListener("abort", () => resolve(), { once: true });
      });
      const unsubscribe = panels.subscribe(send);
      send(panels.all());
      await closed;
      unsubscribe();
    }));

  app.post("/orders", async (c) => {
    const form = await c.req.parseBody();
    const qty = Number(form.qty);
    if (typeof form.user_id !== "string" || typeof form.sku !== "string" || !(qty > 0)) {
      return answer(c, { status: 400, message: "The form needs a student, an item and a qty" });
    }
    const order = { user_id: form.user_id, sku: form.sku, qty };
    return answer(c, await actions.placeOrder(options, whoAsked(c), order));
  });
  app.post("/orders/:order_id/cancel", async (c) => {
    return answer(c, await actions.cancelOrder(options, whoAsked(c), c.req.param("order_id")));
  });
  app.post("/dead-letters/replay", async (c) => {
    const form = await c.req.parseBody();
    const queue = form.queue === undefined ? undefined : String(form.queue);
    if (queue !== undefined && !QUEUES.includes(queue as Queue)) {
      return answer(c, { status: 400, message: `No such queue: ${queue}` });
    }
    const messageId = form.message_id === undefined ? undefined : String(form.message_id);
    const choice = { queue: queue as Queue | undefined, messageId };
    return answer(c, await actions.replay(options, whoAsked(c), choice));
  });
  app.post("/services/:name/:action{stop|start}", async (c) => {
    const name = c.req.param("name") as ServiceName;
    const action = c.req.param("action") as "stop" | "start";
    if (!SERVICES.includes(name)) return answer(c, { status: 404, message: `No service ${name}` });
    return answer(c, await actions.controlService(options, whoAsked(c), { name, action }));
  });
  return app;
}

/** JSON for the page's script; a plain form post goes back to the page. */
function answer(c: Context, result: ActionAnswer): Response {
  if (!c.req.header("accept")?.includes("application/json")) return c.redirect("/", 303);
  return c.json(result, result.status);
}

/**
 * Who asked: the remote address of the connection, for the log and the page, and under
 * authentication the token's `sub` and the token, which the order API is called with.
 */
function whoAsked(c: Context): Asker {
  const info = c.env as Deno.ServeHandlerInfo<Deno.NetAddr> | undefined;
  const address = info?.remoteAddr?.hostname ?? "unknown";
  const caller = callerOf(c);
  if (caller.open) return { address };
  return { address, sub: caller.userId, token: bearerTokenOf(c.req.header("Authorization")) };
}
