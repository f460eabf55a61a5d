/**
 * The console's HTTP interface: the page, its live updates over server-sent events, its two
 * assets, and one POST per action. A POST answers JSON to the page's script, and sends a browser
 * without it back to the page. With `auth` set, the page, its updates and every POST need a
 * bearer token with the `admin` role, checked as the services check theirs: the page is filled
 * with what the console reads with its own admin token, so reading it is an admin's business too.
 * A browser signs in once with a form; the token then rides in an HttpOnly, SameSite=Strict cookie.
 * @module
 */
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { deleteCookie, setCookie } from "hono/cookie";
import { csrf } from "hono/csrf";
import { decode } from "hono/jwt";
import { streamSSE } from "hono/streaming";
import {
  ADMIN_ROLE,
  type AuthConfig,
  authenticate,
  callerOf,
  requireRole,
  tokenOf,
} from "../../../shared/auth.ts";
import { type Queue, QUEUES } from "../../../shared/topology.ts";
import { type ServiceName, SERVICES } from "../../../shared/topology.ts";
import * as actions from "./actions.ts";
import type { ActionAnswer, ActionContext, Asker } from "./actions.ts";
import { isOrderId } from "./latest_orders.ts";
import { isWebhookId } from "./delivery_view.ts";
import { Page, SignIn } from "./page.tsx";
import type { PanelFeed } from "./panel_feed.ts";

/** What {@linkcode consoleApp} serves. */
export interface ConsoleAppOptions extends ActionContext {
  panels: PanelFeed;
  /** The page's script and style sheet, by file name. */
  assets: ReadonlyMap<string, string>;
  /**
   * Host names besides `localhost` that a request's `Host` may name (`CONSOLE_ALLOWED_HOSTS`, and
   * `CONSOLE_HOST` when it is a name). An IP address is always answered; any other name is
   * refused, so that a web page that renames its own host to this machine (DNS rebinding) cannot
   * read the console. @default {none}
   */
  allowedHosts?: readonly string[];
  /** Ends every event stream, so that the server can shut down. */
  closing: AbortSignal;
  /** How the bearer tokens of actions are checked. @default {not at all: anyone may act} */
  auth?: AuthConfig;
}

const CONTENT_TYPES: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

/** The cookie that keeps a signed-in browser's admin token. */
export const TOKEN_COOKIE = "console_token";

/** How long a browser stays signed in at most, in seconds; the token's `exp` may end it sooner. */
const SESSION_MAX_AGE_S = 12 * 3600;

/**
 * A `Host` that no DNS rebinding can produce: an IP address, which is the page's origin only when
 * the browser was pointed at this machine by address. Rebinding needs a name of the attacker's.
 */
const ADDRESS = /^(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\])$/i;

/** The console's app, over the live picture and actions of `options`. */
export function consoleApp(options: ConsoleAppOptions): Hono {
  const { panels, assets, closing, auth } = options;
  const hosts = new Set(["localhost", ...(options.allowedHosts ?? [])].map((h) => h.toLowerCase()));
  const app = new Hono();
  app.use(async function refuseForeignHosts(c, next) {
    const host = new URL(c.req.url).hostname;
    if (!hosts.has(host) && !ADDRESS.test(host)) {
      return c.text(
        `This console answers on an IP address or ${[...hosts].join(", ")}, not on ${host}: ` +
          `add it to CONSOLE_ALLOWED_HOSTS if it is this machine's name`,
        403,
      );
    }
    await next();
  });
  // A form on another site must not be able to stop a service or replay a DLQ from a browser.
  app.use(csrf());

  const check = authenticate(auth, { log: auth && options.log, cookie: TOKEN_COOKIE });
  const adminOnly = requireRole(ADMIN_ROLE);
  /** The answer refusing `c` (401, 403, or 503 if tokens cannot be checked now), if any. */
  async function refusal(c: Context): Promise<Response | undefined> {
    let authenticated = false;
    const unauthenticated = await check(c, () => Promise.resolve(void (authenticated = true)));
    if (!authenticated) return unauthenticated as Response;
    let admitted = false;
    const denied = await adminOnly(c, () => Promise.resolve(void (admitted = true)));
    return admitted ? undefined : denied as Response;
  }
  // Checks a token typed into the sign-in form as a request carrying it would be checked.
  const tokenCheck = new Hono();
  tokenCheck.get("/", async (c) => await refusal(c) ?? c.body(null, 204));

  // Without authentication the console is a local tool, as it always was: these let all through.
  app.post("/session", async (c) => {
    if (!auth) return c.redirect("/", 303);
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token.trim() : "";
    // A JWT is base64url parts and dots; anything else could not even be sent as a header.
    const checked = await tokenCheck.request("/", {
      headers: /^[\w.~+/=-]+$/.test(token) ? { authorization: `Bearer ${token}` } : {},
    });
    if (checked.status !== 204) return await signIn(c, checked);
    const exp = Number(decode(token).payload.exp);
    const maxAge = Math.max(0, Math.min(SESSION_MAX_AGE_S, Math.floor(exp - Date.now() / 1000)));
    // HttpOnly: no script on the page can read it. Strict: no other site's page sends it along.
    setCookie(c, TOKEN_COOKIE, token, { httpOnly: true, sameSite: "Strict", path: "/", maxAge });
    return c.redirect("/", 303);
  });
  app.post("/session/end", (c) => {
    deleteCookie(c, TOKEN_COOKIE, { path: "/" });
    return c.redirect("/", 303);
  });
  // Every action changes the system: under authentication only an admin may ask for one.
  const adminsOnly: MiddlewareHandler = async (c, next) => {
    const refused = await refusal(c);
    if (refused) return refused;
    await next();
  };
  app.post("*", adminsOnly);
  app.use("/events", adminsOnly);

  app.get("/", async (c) => {
    const refused = await refusal(c);
    if (refused) return await signIn(c, refused);
    return c.html(
      `<!doctype html>${Page({ snapshot: options.live.snapshot(), signedIn: !!auth })}`,
    );
  });
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
  /** A POST on one id in the path: a 400 unless `check.valid` takes the id, else `act` on it. */
  function postOnId(
    path: string,
    check: { valid(id: string): boolean; action: string; rule: string },
    act: (who: Asker, id: string) => Promise<ActionAnswer>,
  ): void {
    app.post(path, async (c) => {
      const id = c.req.param("id") ?? "";
      if (!check.valid(id)) return badId(c, check.action, check.rule, id);
      return answer(c, await act(whoAsked(c), id));
    });
  }
  postOnId("/orders/:id/cancel", {
    valid: isOrderId,
    action: "cancel the order",
    rule: "a ULID (26 characters of Crockford's base 32)",
  }, (who, orderId) => actions.cancelOrder(options, who, orderId));
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
  postOnId("/deliveries/:id/retry", {
    valid: isWebhookId,
    action: "retry the delivery",
    rule: "msg_ and a ULID",
  }, (who, webhookId) => actions.retryDelivery(options, who, webhookId));
  app.post("/services/:name/:action{stop|start}", async (c) => {
    const name = c.req.param("name") as ServiceName;
    const action = c.req.param("action") as "stop" | "start";
    if (!SERVICES.includes(name)) return answer(c, { status: 404, message: `No service ${name}` });
    return answer(c, await actions.controlService(options, whoAsked(c), { name, action }));
  });
  return app;
}

/**
 * The sign-in page, with why the request was refused (`refused`, a JSON error): its status and
 * challenge, and a cookie that failed cleared.
 */
async function signIn(c: Context, refused: Response): Promise<Response> {
  const { error } = await refused.json().catch(() => ({ error: undefined })) as { error?: string };
  const challenge = refused.headers.get("WWW-Authenticate");
  if (challenge) c.header("WWW-Authenticate", challenge);
  deleteCookie(c, TOKEN_COOKIE, { path: "/" });
  const tried = c.req.method === "POST" || c.req.header("cookie")?.includes(`${TOKEN_COOKIE}=`);
  const status = refused.status as 401 | 403 | 503;
  return c.html(`<!doctype html>${SignIn({ error: tried ? error : undefined })}`, status);
}

/** JSON for the page's script; a plain form post goes back to the page. */
function answer(c: Context, result: ActionAnswer): Response {
  if (!c.req.header("accept")?.includes("application/json")) return c.redirect("/", 303);
  return c.json(result, result.status);
}

/** A 400 for an `id` in the path that is not of the shape `rule` says, before anything is done. */
function badId(c: Context, action: string, rule: string, id: string): Response {
  const message = `Cannot ${action} as its id must be ${rule}: current value is ${
    JSON.stringify(id)
  }`;
  return answer(c, { status: 400, message });
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
  return { address, sub: caller.userId, token: tokenOf(c, TOKEN_COOKIE) };
}
