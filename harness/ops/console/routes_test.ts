/**
 * The console's HTTP interface over a real vhost and no services: what it serves, what it refuses,
 * and what it leaves out when it does not own the services (plain `deno task console`).
 */
import assert from "node:assert/strict";
import { waitFor } from "../../lib/async.ts";
import { createVhost } from "../management_api.ts";
import { INTEGRATION } from "../../lib/stack.ts";
import { keepDeadLettering } from "../../lib/broker_check.ts";
import { HARNESS_JWT_SECRET, harnessToken } from "../../lib/secure_mode.ts";
import type { AuthConfig } from "../../../shared/auth.ts";
import { recordingLogger } from "../../../shared/testing/recording_logger.ts";
import { consoleAddress, type RunningConsole, startConsole } from "./console.ts";
import { renderPanels } from "./panels.tsx";

/** How a test's console is started, besides on a vhost of its own and with no services. */
interface ConsoleTestOptions {
  auth?: AuthConfig;
  hostname?: string;
  allowedHosts?: string[];
}

/**
 * Waits for the console's broker connection, which counts only once the whole topology is
 * declared: a minute, as declaring its quorum queues takes long on a busy broker.
 */
async function brokerConnected(live: RunningConsole["live"]): Promise<void> {
  await waitFor("the console's broker connection", () => {
    const { at, broker, problems } = live.snapshot();
    // What a failure shows: whether the broker refused, or the readings stopped coming.
    if (broker.connected) return true;
    throw new Error(JSON.stringify({ reading_age_ms: Date.now() - at, ...broker, problems }));
  }, { timeoutMs: 60_000 });
}

/** Registers a test that runs `fn` against a console of its own, started with `options`. */
function consoleTest(
  name: string,
  fn: (console_: RunningConsole) => Promise<void>,
  options: ConsoleTestOptions = {},
): void {
  Deno.test(name, INTEGRATION, () => withConsole(fn, options));
}

async function withConsole(
  fn: (console_: RunningConsole) => Promise<void>,
  options: ConsoleTestOptions,
): Promise<void> {
  await keepDeadLettering("a console");
  const vhost = await createVhost();
  const console_ = await startConsole({
    auth: options.auth,
    hostname: options.hostname,
    allowedHosts: options.allowedHosts,
    amqpUrls: [vhost.amqpUrl],
    managementUrl: Deno.env.get("RABBITMQ_MANAGEMENT_URL") || "http://guest:guest@127.0.0.1:15672",
    // Nothing runs, and nothing may be stopped or started.
    services: { url: () => undefined },
    log: recordingLogger().log,
    port: 0,
    // Readings come often, so that a test sees the broker connection soon after it is up.
    pollIntervalMs: 200,
  });
  try {
    await fn(console_);
  } finally {
    // Quorum queues deleted while they start are what costs RabbitMQ 3.10 its dead-letter
    // supervisor: the vhost goes only once the console has declared them all.
    await brokerConnected(console_.live).catch(() => {});
    await console_.close();
    await vhost.delete();
  }
}

function post(
  url: string,
  init: { origin?: string; form?: Record<string, string>; token?: string; cookie?: string } = {},
) {
  const body = new FormData();
  for (const [name, value] of Object.entries(init.form ?? {})) body.set(name, value);
  const headers = new Headers({
    accept: "application/json",
    origin: init.origin ?? new URL(url).origin,
  });
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.cookie) headers.set("cookie", init.cookie);
  return fetch(url, { method: "POST", headers, body, redirect: "manual" });
}

/** A GET with an admin's `token` in the Authorization header, or a sign-in `cookie`. */
function get(url: string, init: { token?: string; cookie?: string } = {}): Promise<Response> {
  const headers = new Headers();
  if (init.token) headers.set("authorization", `Bearer ${init.token}`);
  if (init.cookie) headers.set("cookie", init.cookie);
  return fetch(url, { headers, redirect: "manual" });
}

/** The order form posted as a browser without the page's script posts it. */
function placeByPlainForm(url: string): Promise<Response> {
  return fetch(new URL("/orders", url), {
    method: "POST",
    headers: { origin: new URL(url).origin },
    body: new URLSearchParams({ user_id: "u1", sku: "burger", qty: "1" }),
    redirect: "manual",
  });
}

/** A GET with the `Host` header given, which fetch() would not send: as a rebound name would. */
async function rawGet(url: string, host: string): Promise<string> {
  const { port } = new URL(url);
  const connection = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  await connection.write(
    new TextEncoder().encode(
      `GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`,
    ),
  );
  const answer = await new Response(connection.readable).text();
  return answer;
}

consoleTest(
  "console serves the page, its assets and its first panels without services, against the broker",
  async ({ url }) => {
    const page = await (await fetch(url)).text();
    assert.match(page, /^<!doctype html>/);
    const ids = ["services", "rates", "queues", "orders", "stock", "dead-letters", "deliveries"];
    for (const id of ids) {
      assert.match(page, new RegExp(`<div id="${id}">`), `the page has the ${id} panel`);
    }
    const script = await fetch(new URL("/assets/console.js", url));
    assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.match(await script.text(), /new EventSource\("\/events"\)/);
    assert.equal((await fetch(new URL("/assets/other.js", url))).status, 404);

    const events = await fetch(new URL("/events", url));
    const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
    let received = "";
    await waitFor("the first panels over SSE", async () => {
      received += (await reader.read()).value ?? "";
      return received.includes("\n\n");
    });
    await reader.cancel();
    assert.match(received, /^event: panels\ndata: /);
    const panels = JSON.parse(received.split("\n")[1].slice("data: ".length));
    assert.match(panels.services, /data-service="order" data-state="stopped"/);
  },
);

consoleTest(
  "console offers no stop or start outside deno task dev, against the broker",
  async ({ url }) => {
    const page = await (await fetch(url)).text();
    assert.doesNotMatch(page, /\/services\/\w+\/stop/);
    const stop = await post(new URL("/services/inventory/stop", url).href);
    assert.equal(stop.status, 404);
    assert.match((await stop.json()).message, /deno task dev/);
  },
);

consoleTest(
  "console refuses a form posted from another site and a foreign Host, against the broker",
  async ({ url, live }) => {
    const replay = new URL("/dead-letters/replay", url).href;
    const forged = await post(replay, { origin: "http://evil.example" });
    assert.equal(forged.status, 403);
    await forged.body?.cancel();
    assert.match(await rawGet(url, "evil.example"), /^HTTP\/1\.1 403/);
    assert.match(await rawGet(url, "localhost"), /^HTTP\/1\.1 200/);
    await brokerConnected(live);
    const own = await post(replay);
    assert.equal(own.status, 200);
    assert.match((await own.json()).message, /Replayed 0 message\(s\) from every DLQ/);
  },
);

consoleTest(
  "console answers a plain form post with a redirect to the page, against the broker",
  async ({ url }) => {
    const response = await placeByPlainForm(url);
    assert.equal(response.status, 303);
    assert.equal(response.headers.get("location"), "/");
    const json = await post(new URL("/orders", url).href, {
      form: { user_id: "u1", sku: "burger", qty: "1" },
    });
    assert.equal(json.status, 503, "no order service runs");
  },
);

consoleTest(
  "console under AUTH_JWT_SECRET lets only an admin act, against the broker",
  async ({ url, live }) => {
    const student = await harnessToken("s1");
    const admin = await harnessToken("ops", { role: "admin" });
    await brokerConnected(live);

    const replay = new URL("/dead-letters/replay", url).href;
    const anonymous = await post(replay);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.match((await anonymous.json()).error, /a valid bearer token is required/);
    const forged = await post(replay, { token: admin.slice(0, -2) + "xx" });
    assert.equal(forged.status, 401);
    await forged.body?.cancel();
    const byStudent = await post(replay, { token: student });
    assert.equal(byStudent.status, 403);
    assert.match((await byStudent.json()).error, /this needs a token with the admin role/);
    for (
      const path of [
        "/orders",
        "/orders/01JABCDEFGHJKMNPQRSTVWXYZ0/cancel",
        "/services/inventory/stop",
        "/deliveries/msg_01JABCDEFGHJKMNPQRSTVWXYZ0/retry",
      ]
    ) {
      const refused = await post(new URL(path, url).href, { token: student });
      assert.equal(refused.status, 403, `POST ${path} with a student's token`);
      await refused.body?.cancel();
    }

    const byAdmin = await post(replay, { token: admin });
    assert.equal(byAdmin.status, 200);
    assert.match((await byAdmin.json()).message, /Replayed 0 message\(s\) from every DLQ/);
    await waitFor("the replay listed", () => live.snapshot().activity.length > 0);
    const done = live.snapshot().activity.map(({ who, what }) => `${what} by ${who}`);
    // Nothing refused was done, and the admin's replay is listed with the token's sub.
    assert.deepEqual(done, ["replayed 0 from every DLQ by 127.0.0.1 (ops)"]);
    // A plain form post cannot carry the token: it is refused, not redirected.
    const plain = await placeByPlainForm(url);
    assert.equal(plain.status, 401);
    await plain.body?.cancel();
  },
  { auth: { jwtSecret: HARNESS_JWT_SECRET } },
);

consoleTest(
  "console without authentication asks for no token and logs who asked without a sub, against the broker",
  async ({ url, live }) => {
    assert.doesNotMatch(await (await fetch(url)).text(), /id="token"/);
    await brokerConnected(live);
    const own = await post(new URL("/dead-letters/replay", url).href);
    assert.equal(own.status, 200);
    await own.body?.cancel();
    await waitFor("the replay listed", () => live.snapshot().activity.length > 0);
    assert.equal(live.snapshot().activity[0].who, "127.0.0.1");
  },
);

Deno.test("consoleAddress() reads CONSOLE_PORT and CONSOLE_HOST, loopback by default", () => {
  assert.deepEqual(consoleAddress({}), { port: 8000, hostname: "127.0.0.1", allowedHosts: [] });
  assert.deepEqual(
    consoleAddress({
      CONSOLE_PORT: "0",
      CONSOLE_HOST: "0.0.0.0",
      CONSOLE_ALLOWED_HOSTS: "console.lan, ops-laptop",
    }),
    { port: 0, hostname: "0.0.0.0", allowedHosts: ["console.lan", "ops-laptop"] },
  );
  assert.throws(
    () => consoleAddress({ CONSOLE_ALLOWED_HOSTS: "console.lan,http://evil/" }),
    /Cannot start the console as CONSOLE_ALLOWED_HOSTS must be comma-separated host names: current value is "console.lan,http:\/\/evil\/"/,
  );
  assert.throws(
    () => consoleAddress({ CONSOLE_PORT: "80a" }),
    /Cannot start the console as CONSOLE_PORT must be an integer 0-65535: current value is "80a"/,
  );
});

consoleTest(
  "console under AUTH_JWT_SECRET shows its page and live updates to a signed-in admin only, against the broker",
  async ({ url }) => {
    const student = await harnessToken("s1");
    const admin = await harnessToken("ops", { role: "admin" });
    const events = new URL("/events", url).href;
    // Nothing the console reads with its own admin token reaches a stranger.
    const stranger = await get(url);
    assert.equal(stranger.status, 401);
    assert.match(stranger.headers.get("www-authenticate") ?? "", /^Bearer/);
    const signInPage = await stranger.text();
    assert.match(signInPage, /<form method="post" action="\/session" class="login">/);
    assert.match(signInPage, /<input id="token" name="token" type="password"/);
    assert.doesNotMatch(signInPage, /id="orders"|id="services"|EventSource|console\.js/);
    assert.equal((await get(events)).status, 401, "the live updates need a token");
    const byStudent = await get(events, { token: student });
    assert.equal(byStudent.status, 403);
    await byStudent.body?.cancel();
    assert.equal((await get(url, { token: student })).status, 403);
    const byHeader = await get(url, { token: admin });
    assert.equal(byHeader.status, 200, "a tool may send the token as a header");
    assert.match(await byHeader.text(), /<div id="orders">/);

    // Signing in: a student's token and a bad one are refused, an admin's is kept in a cookie.
    const refused = await post(new URL("/session", url).href, { form: { token: student } });
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /this needs a token with the admin role/);
    const garbled = await post(new URL("/session", url).href, { form: { token: "x.y.z" } });
    assert.equal(garbled.status, 401);
    await garbled.body?.cancel();
    const forged = await post(new URL("/session", url).href, {
      form: { token: admin },
      origin: "http://evil.example",
    });
    assert.equal(forged.status, 403, "another site cannot sign a browser in");
    await forged.body?.cancel();
    const signedIn = await post(new URL("/session", url).href, { form: { token: admin } });
    assert.equal(signedIn.status, 303);
    assert.equal(signedIn.headers.get("location"), "/");
    const setCookie = signedIn.headers.get("set-cookie") ?? "";
    assert.match(
      setCookie,
      /^console_token=[\w.-]+; Max-Age=\d+; Path=\/; HttpOnly; SameSite=Strict$/,
    );
    const cookie = setCookie.split(";")[0];

    const page = await get(url, { cookie });
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(html, /<div id="orders">/);
    assert.match(html, /action="\/session\/end"/, "the page offers to sign out");
    const stream = await get(events, { cookie });
    assert.equal(stream.status, 200);
    assert.match(stream.headers.get("content-type") ?? "", /text\/event-stream/);
    await stream.body?.cancel();
    // With the cookie even a plain form post (no script) may act, and goes back to the page.
    const plain = await fetch(new URL("/dead-letters/replay", url), {
      method: "POST",
      headers: { origin: new URL(url).origin, cookie },
      body: new URLSearchParams({}),
      redirect: "manual",
    });
    assert.equal(plain.status, 303);
    await plain.body?.cancel();
    // A cookie whose token no longer passes gets the sign-in page, and is cleared.
    const stale = await get(url, { cookie: `console_token=${admin.slice(0, -2)}xx` });
    assert.equal(stale.status, 401);
    assert.match(stale.headers.get("set-cookie") ?? "", /^console_token=; Max-Age=0/);
    assert.match(await stale.text(), /class="bad"/);

    const signedOut = await post(new URL("/session/end", url).href, { cookie });
    assert.equal(signedOut.status, 303);
    assert.match(signedOut.headers.get("set-cookie") ?? "", /^console_token=; Max-Age=0/);
  },
  { auth: { jwtSecret: HARNESS_JWT_SECRET } },
);

consoleTest(
  "console on 0.0.0.0 keeps refusing a foreign Host, and answers its addresses and allowed names, against the broker",
  async ({ url }) => {
    const local = `http://127.0.0.1:${new URL(url).port}/`;
    assert.match(await rawGet(local, "evil.example"), /^HTTP\/1\.1 403/);
    assert.match(await rawGet(local, "console.lan.evil.example"), /^HTTP\/1\.1 403/);
    for (const host of ["127.0.0.1", "localhost", "192.168.1.20", "[::1]", "console.lan"]) {
      assert.match(await rawGet(local, host), /^HTTP\/1\.1 200/, host);
    }
  },
  { hostname: "0.0.0.0", allowedHosts: ["console.lan"] },
);

consoleTest(
  "console encodes order ids in its forms, offers no Cancel for an id that is no ULID, and refuses one with 400, against the broker",
  async ({ url, live }) => {
    const good = "01JABCDEFGHJKMNPQRSTVWXYZ0";
    const evil = "../services/inventory/stop?";
    const row = (order_id: string) => ({
      order_id,
      user_id: "u1",
      items: [{ sku: "burger", qty: 1 }],
      status: "PENDING",
      created_at: "",
    });
    const html = renderPanels({ ...live.snapshot(), orders: [row(good), row(evil)] })
      .get("orders")!;
    const actions = [...html.matchAll(/action="([^"]*)"/g)].map((match) => match[1]);
    assert.deepEqual(actions, [`/orders/${good}/cancel`]);
    assert.match(html, /data-order-id="\.\.\/services\/inventory\/stop\?"/, "still listed");

    for (
      const id of ["..%2Fservices%2Finventory%2Fstop%3F", "o1", `${good}x`, good.toLowerCase()]
    ) {
      const refused = await post(new URL(`/orders/${id}/cancel`, url).href);
      assert.equal(refused.status, 400, id);
      assert.match(
        (await refused.json()).message,
        /Cannot cancel the order as its id must be a ULID/,
      );
    }
    const ulid = await post(new URL(`/orders/${good}/cancel`, url).href);
    assert.equal(ulid.status, 503, "a ULID goes on to the order API, which does not run here");
    await ulid.body?.cancel();
  },
);
