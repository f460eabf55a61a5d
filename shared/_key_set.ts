/**
 * An identity provider's signing keys, fetched from its JWKS URL and kept, for `hono/jwk`.
 * @module
 */
import type { Context } from "hono";
import { decode } from "hono/jwt";
import type { HonoJsonWebKey } from "hono/utils/jwt/jws";
import { describeError, type Logger } from "./log.ts";

/** The token of an `Authorization: Bearer <token>` header, as `hono/jwt` reads it. */
export function bearerTokenOf(authorization: string | undefined): string | undefined {
  return authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
}

/**
 * The keys at `url`, fetched when first needed and again after `jwksMaxAgeMs`, or sooner when a
 * token names a key not among them (the provider rotated its keys). Tokens with made-up key ids
 * cause at most one fetch per tenth of the age, so they cannot flood the provider. While the
 * provider does not answer, the keys fetched last are used.
 */
export function cachedKeySet(
  url: string,
  options: { log?: Logger; jwksMaxAgeMs?: number },
): (c: Context) => Promise<HonoJsonWebKey[]> {
  const { jwksMaxAgeMs = 300_000 } = options;
  const minRefetchMs = jwksMaxAgeMs / 10;
  let keys: HonoJsonWebKey[] | undefined;
  let fetchedAt = 0;
  let fetching: Promise<HonoJsonWebKey[]> | undefined;

  async function fetchKeys(): Promise<HonoJsonWebKey[]> {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    if (!response.ok) throw new Error(`The key set at ${url} answered ${response.status}`);
    const body = await response.json() as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error(`The key set at ${url} has no keys list`);
    keys = body.keys as HonoJsonWebKey[];
    fetchedAt = Date.now();
    return keys;
  }

  return async function currentKeys(c) {
    const age = Date.now() - fetchedAt;
    const wanted = kidOf(c.req.header("Authorization"));
    const unknown = wanted !== undefined && !keys?.some((key) => key.kid === wanted);
    if (keys && age < jwksMaxAgeMs && !(unknown && age >= minRefetchMs)) return keys;
    // Concurrent requests share one fetch.
    fetching ??= fetchKeys().finally(() => fetching = undefined);
    try {
      return await fetching;
    } catch (error) {
      if (!keys) throw error;
      options.log?.warn("cannot refresh the JWKS key set, using the last one", {
        error: describeError(error),
      });
      fetchedAt = Date.now() - jwksMaxAgeMs + minRefetchMs;
      return keys;
    }
  };
}

/** The `kid` in the header of the bearer token of `authorization`, if it has one. */
function kidOf(authorization: string | undefined): string | undefined {
  const token = bearerTokenOf(authorization);
  if (!token) return undefined;
  try {
    return decode(token).header.kid;
  } catch {
    return undefined;
  }
}
