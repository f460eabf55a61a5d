import assert from "node:assert/strict";
import { Hono } from "hono";
import { bearerTokenOf, cachedKeySet, tokenOf } from "./key_set.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

/** A JWKS endpoint on a free port that fails while `failing` is set and counts its fetches. */
function provider():
  & { url: string; fetches: () => number; fail(on: boolean): void }
  & AsyncDisposable {
  let fetches = 0;
  let failing = false;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
    fetches++;
    return failing
      ? new Response("down", { status: 503 })
      : Response.json({ keys: [{ kty: "oct", kid: "k1", k: "c2VjcmV0" }] });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/jwks.json`,
    fetches: () => fetches,
    fail: (on) => void (failing = on),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Asks `keys` once, as a request with no token would. */
async function ask(keys: ReturnType<typeof cachedKeySet>): Promise<string> {
  const app = new Hono().get("/", async (c) => c.text((await keys(c)).map((k) => k.kid).join()))
    .onError((_, c) => c.text("failed", 500));
  const response = await app.request("/");
  return response.ok ? await response.text() : `error ${response.status}`;
}

Deno.test("bearerTokenOf() takes the token of a Bearer header, in any case, and nothing else", () => {
  assert.equal(bearerTokenOf("Bearer abc.def"), "abc.def");
  assert.equal(bearerTokenOf("bearer abc"), "abc");
  assert.equal(bearerTokenOf("Basic abc"), undefined);
  assert.equal(bearerTokenOf("Bearer a b"), undefined);
  assert.equal(bearerTokenOf(undefined), undefined);
});

Deno.test("tokenOf() prefers the Authorization header and falls back to the cookie named", async () => {
  const app = new Hono().get("/", (c) => c.text(tokenOf(c, "session") ?? "none"));
  const asked = async (headers: Record<string, string>) =>
    await (await app.request("/", { headers })).text();
  assert.equal(await asked({ Authorization: "Bearer h", Cookie: "session=c" }), "h");
  assert.equal(await asked({ Cookie: "session=c" }), "c");
  assert.equal(await asked({}), "none");
});

Deno.test("cachedKeySet() fetches once while fresh, and backs off from a provider that is down", async () => {
  await using jwks = provider();
  const { log, lines } = recordingLogger();
  const keys = cachedKeySet(jwks.url, { log, jwksMaxAgeMs: 0, jwksRetryMinMs: 60_000 });
  assert.equal(await ask(keys), "k1");
  jwks.fail(true);
  // Too old at once (max age 0): the next request fetches, fails, and keeps the last keys.
  assert.equal(await ask(keys), "k1");
  assert.equal(jwks.fetches(), 2);
  // Within the backoff no request fetches again, however many come.
  for (let i = 0; i < 20; i++) assert.equal(await ask(keys), "k1");
  assert.equal(jwks.fetches(), 2);
  assert.deepEqual(lines, ["warn cannot refresh the JWKS key set, using the last one"]);
});

Deno.test("cachedKeySet() before any key set was fetched throws the last failure until the backoff ends", async () => {
  await using jwks = provider();
  jwks.fail(true);
  const keys = cachedKeySet(jwks.url, { jwksRetryMinMs: 60_000 });
  assert.equal(await ask(keys), "error 500");
  assert.equal(await ask(keys), "error 500");
  assert.equal(jwks.fetches(), 1);
});
