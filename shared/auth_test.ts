import assert from "node:assert/strict";
import { Hono } from "hono";
import { sign } from "hono/jwt";
import {
  type AuthConfig,
  authenticate,
  callerOf,
  CLOCK_LEEWAY_S,
  mayActFor,
  requireRole,
  tokenOf,
} from "./auth.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

const SECRET = "a-test-secret-of-at-least-thirty-two-characters";
const HOUR_S = 3600;

/** An app whose `/me` answers the caller and whose `/admin` needs the admin role. */
function appWith(
  config: AuthConfig | undefined,
  log = recordingLogger().log,
  jwksMaxAgeMs?: number,
): Hono {
  const app = new Hono();
  const auth = authenticate(config, { log, jwksMaxAgeMs });
  app.get("/me", auth, (c) => c.json(callerOf(c)));
  app.get("/admin", auth, requireRole("admin"), (c) => c.json({ ok: true }));
  return app;
}

function token(claims: Record<string, unknown>, secret = SECRET): Promise<string> {
  return sign({ exp: Math.floor(Date.now() / 1000) + HOUR_S, ...claims }, secret, "HS256");
}

function get(app: Hono, path: string, bearer?: string): Promise<Response> {
  return Promise.resolve(
    app.request(path, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} }),
  );
}

async function assertUnauthorized(response: Response, reason: RegExp): Promise<void> {
  assert.equal(response.status, 401);
  assert.match(response.headers.get("content-type") ?? "", /application\/json/);
  assert.match(response.headers.get("www-authenticate") ?? "", /^Bearer /);
  assert.match((await response.json()).error, reason);
}

Deno.test("authenticate() without keys lets every caller act for anyone, and warns once", async () => {
  const { log, lines } = recordingLogger();
  const app = appWith(undefined, log);
  const caller = await (await get(app, "/me")).json();
  assert.deepEqual(caller, { roles: [], open: true });
  assert.equal((await get(app, "/admin")).status, 200);
  assert.deepEqual(lines.filter((line) => line.startsWith("warn authentication is off")).length, 1);
  assert.ok(mayActFor(caller, "anyone"));
});

Deno.test("authenticate() with a secret takes the student from sub and the roles from role and roles", async () => {
  const app = appWith({ jwtSecret: SECRET });
  assert.deepEqual(await (await get(app, "/me", await token({ sub: "u1" }))).json(), {
    userId: "u1",
    roles: [],
    open: false,
  });
  const admin = await (await get(app, "/me", await token({ sub: "ops", role: "admin" }))).json();
  assert.deepEqual(admin.roles, ["admin"]);
  assert.ok(mayActFor(admin, "u1"));
  const listed = await (await get(app, "/me", await token({ sub: "ops", roles: ["x", "admin"] })))
    .json();
  assert.deepEqual(listed.roles, ["x", "admin"]);
});

Deno.test("authenticate() answers 401 as JSON to a missing, malformed, forged or expired token", async () => {
  const app = appWith({ jwtSecret: SECRET });
  await assertUnauthorized(await get(app, "/me"), /no authorization included/);
  await assertUnauthorized(
    await app.request("/me", { headers: { authorization: "Basic dTE6cHc=" } }),
    /invalid credentials structure/,
  );
  const forged = await token({ sub: "u1", role: "admin" }, "another-secret-thirty-two-chars-long!");
  await assertUnauthorized(await get(app, "/me", forged), /verification failure/);
  const expired = await token({ sub: "u1", exp: Math.floor(Date.now() / 1000) - 60 });
  await assertUnauthorized(await get(app, "/me", expired), /verification failure/);
});

Deno.test("authenticate() refuses a token without sub or without exp", async () => {
  const app = appWith({ jwtSecret: SECRET });
  await assertUnauthorized(await get(app, "/me", await token({ role: "admin" })), /sub/);
  await assertUnauthorized(await get(app, "/me", await token({ sub: "x".repeat(129) })), /sub/);
  const forever = await sign({ sub: "u1" }, SECRET, "HS256");
  await assertUnauthorized(await get(app, "/me", forever), /exp is missing/);
});

Deno.test("authenticate() checks the audience and the issuer when they are set", async () => {
  const app = appWith({ jwtSecret: SECRET, audience: "campus-food", issuer: "https://id.example" });
  const good = await token({ sub: "u1", aud: "campus-food", iss: "https://id.example" });
  assert.equal((await get(app, "/me", good)).status, 200);
  const otherApp = await token({ sub: "u1", aud: "library", iss: "https://id.example" });
  await assertUnauthorized(await get(app, "/me", otherApp), /verification failure/);
  const otherIssuer = await token({ sub: "u1", aud: "campus-food", iss: "https://evil.example" });
  await assertUnauthorized(await get(app, "/me", otherIssuer), /verification failure/);
});

Deno.test("requireRole() answers 403 as JSON to a student and lets an admin through", async () => {
  const app = appWith({ jwtSecret: SECRET });
  const student = await get(app, "/admin", await token({ sub: "u1", role: "student" }));
  assert.equal(student.status, 403);
  assert.deepEqual(await student.json(), { error: "this needs a token with the admin role" });
  assert.equal((await get(app, "/admin", await token({ sub: "ops", role: "admin" }))).status, 200);
});

/** An identity provider's JWKS endpoint on a free port, serving the public halves of `keys`. */
function serveKeySet(): {
  url: string;
  fetches: () => number;
  publish(keys: JsonWebKey[]): void;
  down(is: boolean): void;
  close(): Promise<void>;
} {
  let published: JsonWebKey[] = [];
  let fetches = 0;
  let down = false;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, () => {
    fetches++;
    return down ? new Response("down", { status: 502 }) : Response.json({ keys: published });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/.well-known/jwks.json`,
    fetches: () => fetches,
    publish: (keys) => published = keys,
    down: (is) => down = is,
    close: () => server.shutdown(),
  };
}

/** Runs `fn` with a key set server of its own, shut down after. */
async function withProvider(
  fn: (provider: ReturnType<typeof serveKeySet>) => Promise<void>,
): Promise<void> {
  const provider = serveKeySet();
  try {
    await fn(provider);
  } finally {
    await provider.close();
  }
}

/** A new ES256 key pair as JWKs named `kid`. */
async function keyPair(kid: string): Promise<{ privateJwk: JsonWebKey; publicJwk: JsonWebKey }> {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ]);
  const extra = { kid, alg: "ES256" };
  return {
    privateJwk: { ...await crypto.subtle.exportKey("jwk", pair.privateKey), ...extra },
    publicJwk: { ...await crypto.subtle.exportKey("jwk", pair.publicKey), ...extra },
  };
}

function tokenSignedBy(privateJwk: JsonWebKey, claims: Record<string, unknown>): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + HOUR_S;
  return sign({ exp, ...claims }, privateJwk as JsonWebKey & { alg: "ES256" });
}

Deno.test("authenticate() with a JWKS URL checks tokens against the provider's keys, fetched once", async () => {
  await withProvider(async (provider) => {
    const first = await keyPair("k1");
    provider.publish([first.publicJwk]);
    const app = appWith({ jwksUrl: provider.url });
    for (const sub of ["u1", "u2", "u3"]) {
      const response = await get(app, "/me", await tokenSignedBy(first.privateJwk, { sub }));
      assert.equal((await response.json()).userId, sub);
    }
    assert.equal(provider.fetches(), 1);
    const stranger = await keyPair("k1");
    await assertUnauthorized(
      await get(app, "/me", await tokenSignedBy(stranger.privateJwk, { sub: "u1" })),
      /verification failure/,
    );
    const hs256 = await token({ sub: "u1", role: "admin" });
    await assertUnauthorized(await get(app, "/me", hs256), /verification failure/);
  });
});

Deno.test("authenticate() fetches the key set again for a rotated key, not for every unknown one", async () => {
  await withProvider(async (provider) => {
    const first = await keyPair("k1");
    const second = await keyPair("k2");
    provider.publish([first.publicJwk]);
    // Keys kept for 1 s: a key unknown to them makes a fetch at most every 100 ms.
    const app = appWith({ jwksUrl: provider.url }, recordingLogger().log, 1_000);
    const bearerOf = (sub: string) => tokenSignedBy(second.privateJwk, { sub });
    assert.equal(
      (await get(app, "/me", await tokenSignedBy(first.privateJwk, { sub: "u1" }))).status,
      200,
    );
    provider.publish([first.publicJwk, second.publicJwk]);
    const started = Date.now();
    let refused = 0;
    while ((await get(app, "/me", await bearerOf("u2"))).status !== 200) {
      refused++;
      assert.ok(Date.now() - started < 2_000, "the rotated key was fetched within 2 s");
    }
    assert.ok(refused > 0, "a fresh key set is not fetched again at once");
    assert.ok(
      provider.fetches() <= 2 + (Date.now() - started) / 100,
      `${provider.fetches()} fetches`,
    );
  });
});

Deno.test("authenticate() keeps checking tokens with the last keys while the provider is down", async () => {
  await withProvider(async (provider) => {
    const { privateJwk, publicJwk } = await keyPair("k1");
    provider.publish([publicJwk]);
    const { log, lines } = recordingLogger();
    const app = appWith({ jwksUrl: provider.url }, log, 0);
    assert.equal(
      (await get(app, "/me", await tokenSignedBy(privateJwk, { sub: "u1" }))).status,
      200,
    );
    provider.down(true);
    const whileDown = await get(app, "/me", await tokenSignedBy(privateJwk, { sub: "u2" }));
    assert.equal(whileDown.status, 200);
    assert.ok(lines.includes("warn cannot refresh the JWKS key set, using the last one"));
  });
});

Deno.test("authenticate() answers 503 when the key set was never fetched and the provider is down", async () => {
  await withProvider(async (provider) => {
    provider.down(true);
    const { privateJwk } = await keyPair("k1");
    const response = await get(
      appWith({ jwksUrl: provider.url }),
      "/me",
      await tokenSignedBy(privateJwk, { sub: "u1" }),
    );
    assert.equal(response.status, 503);
    assert.match((await response.json()).error, /cannot check tokens now/);
  });
});

Deno.test("authenticate() takes a token it verified on trust, and only that very token", async () => {
  await withProvider(async (provider) => {
    const { privateJwk, publicJwk } = await keyPair("k1");
    provider.publish([publicJwk]);
    // Keys never kept: every signature check fetches them, which counts the checks.
    const app = appWith({ jwksUrl: provider.url }, recordingLogger().log, 0);
    const good = await tokenSignedBy(privateJwk, { sub: "u1" });
    for (let i = 0; i < 3; i++) assert.equal((await get(app, "/me", good)).status, 200);
    assert.equal(provider.fetches(), 1, "one signature check for three requests");
    const [header, payload] = good.split(".");
    const forged = `${header}.${payload}.${"A".repeat(86)}`;
    await assertUnauthorized(await get(app, "/me", forged), /verification failure/);
  });
});

Deno.test("authenticate() stops taking a verified token once it expires", async () => {
  const app = appWith({ jwtSecret: SECRET });
  // Past its exp, but within the clock leeway for another second.
  const shortLived = await token({
    sub: "u1",
    exp: Math.floor(Date.now() / 1000) + 1 - CLOCK_LEEWAY_S,
  });
  assert.equal((await get(app, "/me", shortLived)).status, 200);
  const deadline = Date.now() + 3_000;
  while ((await get(app, "/me", shortLived)).status === 200) {
    assert.ok(Date.now() < deadline, "the token was refused within 2 s of its exp");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await assertUnauthorized(await get(app, "/me", shortLived), /verification failure/);
});

Deno.test("authenticate() allows 30 s of clock skew on exp, nbf and iat, and no more", async () => {
  const now = Math.floor(Date.now() / 1000);
  for (const verifier of ["secret", "jwks"] as const) {
    await withProvider(async (provider) => {
      const { privateJwk, publicJwk } = await keyPair("k1");
      provider.publish([publicJwk]);
      const app = verifier === "secret"
        ? appWith({ jwtSecret: SECRET })
        : appWith({ jwksUrl: provider.url, audience: "campus-food" });
      const signed = (claims: Record<string, unknown>) =>
        verifier === "secret"
          ? token({ sub: "u1", ...claims })
          : tokenSignedBy(privateJwk, { sub: "u1", aud: "campus-food", ...claims });
      const status = async (claims: Record<string, unknown>) =>
        (await get(app, "/me", await signed(claims))).status;
      assert.equal(await status({ exp: now - 10 }), 200, `${verifier}: expired 10 s ago`);
      assert.equal(await status({ nbf: now + 10 }), 200, `${verifier}: nbf 10 s ahead`);
      assert.equal(await status({ iat: now + 10 }), 200, `${verifier}: iat 10 s ahead`);
      await assertUnauthorized(await get(app, "/me", await signed({ exp: now - 60 })), /expired/);
      await assertUnauthorized(await get(app, "/me", await signed({ nbf: now + 60 })), /nbf/);
      await assertUnauthorized(await get(app, "/me", await signed({ iat: now + 60 })), /iat/);
      await assertUnauthorized(await get(app, "/me", await signed({ exp: "tomorrow" })), /expired/);
    });
  }
});

Deno.test("authenticate() backs off fetching a key set that is down, answering 503 at once meanwhile", async () => {
  await withProvider(async (provider) => {
    provider.down(true);
    const { privateJwk, publicJwk } = await keyPair("k1");
    const { log, lines } = recordingLogger();
    const app = appWith({ jwksUrl: provider.url, audience: "campus-food" }, log);
    const bearer = await tokenSignedBy(privateJwk, { sub: "u1", aud: "campus-food" });
    const started = Date.now();
    let requests = 0;
    while (Date.now() - started < 1_500) {
      const asked = Date.now();
      const response = await get(app, "/me", bearer);
      assert.equal(response.status, 503);
      await response.body?.cancel();
      assert.ok(Date.now() - asked < 500, "answered without waiting for the provider");
      requests++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // One fetch at once, the next a second later; the third not before 3 s.
    assert.ok(requests > 20, `${requests} requests`);
    assert.ok(provider.fetches() <= 2, `${provider.fetches()} fetches for ${requests} requests`);
    assert.equal(lines.filter((line) => line.startsWith("warn cannot fetch the JWKS")).length, 1);

    provider.publish([publicJwk]);
    provider.down(false);
    const deadline = Date.now() + 6_000;
    while ((await get(app, "/me", bearer)).status !== 200) {
      assert.ok(Date.now() < deadline, "the key set was fetched again once the provider was back");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(lines.includes("info fetched the JWKS key set again"), lines.join("\n"));
  });
});

Deno.test("authenticate() answers 503, not 401, while the key set's server refuses connections", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  const { privateJwk } = await keyPair("k1");
  const app = appWith({ jwksUrl: `http://127.0.0.1:${port}/jwks.json`, audience: "campus-food" });
  const bearer = await tokenSignedBy(privateJwk, { sub: "u1", aud: "campus-food" });
  for (let i = 0; i < 2; i++) {
    const response = await get(app, "/me", bearer);
    assert.equal(response.status, 503, `request ${i + 1}`);
    assert.match((await response.json()).error, /cannot check tokens now/);
  }
});

Deno.test("authenticate() with a cookie takes the token from it when there is no Authorization header", async () => {
  const admin = await token({ sub: "ops", role: "admin" });
  const withCookie = new Hono();
  withCookie.get("/me", authenticate({ jwtSecret: SECRET }, { cookie: "t" }), (c) => {
    return c.json({ ...callerOf(c), token: tokenOf(c, "t") === admin });
  });
  const byCookie = await withCookie.request("/me", { headers: { cookie: `t=${admin}` } });
  assert.deepEqual(await byCookie.json(), {
    userId: "ops",
    roles: ["admin"],
    open: false,
    token: true,
  });
  // A header, even a bad one, is what the caller meant: the cookie does not stand in for it.
  const both = await withCookie.request("/me", {
    headers: { cookie: `t=${admin}`, authorization: "Bearer nonsense" },
  });
  await assertUnauthorized(both, /verification failure|invalid/);
  // Without the option a cookie is no credential at all.
  await assertUnauthorized(
    await appWith({ jwtSecret: SECRET }).request("/me", { headers: { cookie: `t=${admin}` } }),
    /no authorization included/,
  );
});
