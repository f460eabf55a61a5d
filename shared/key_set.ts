/**
 * An identity provider's signing keys, fetched from its JWKS URL and kept, for `hono/jwk`.
 * @module
 */
import type { Context } from "hono";
import { getCookie } from "hono/cookie";
import { decode } from "hono/jwt";
import type { HonoJsonWebKey } from "hono/utils/jwt/jws";
import { describeError, type Logger } from "./log.ts";
import { backoffDelayMs } from "./backoff.ts";

/** The token of an `Authorization: Bearer <token>` header, as `hono/jwt` reads it. */
export function bearerTokenOf(authorization: string | undefined): string | undefined {
  return authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
}

/** Options for {@linkcode cachedKeySet}. */
export interface KeySetOptions {
  /** Says when the key set cannot be fetched (once per streak of failures) and when it can again. */
  log?: Logger;
  /** How long fetched keys are used, in milliseconds. @default {300000} */
  jwksMaxAgeMs?: number;
  /** The wait after a first failed fetch before the next, in milliseconds. @default {1000} */
  jwksRetryMinMs?: number;
  /** The longest wait between two failed fetches, in milliseconds. @default {30000} */
  jwksRetryMaxMs?: number;
  /** A cookie that carries the token when there is no `Authorization` header. */
  cookie?: string;
}

/** The bearer token of a request: its `Authorization` header's, else the `cookie` named. */
export function tokenOf(c: Context, cookie?: string): string | undefined {
  const header = c.req.header("Authorization");
  if (header !== undefined || cookie === undefined) return bearerTokenOf(header);
  return getCookie(c, cookie) || undefined;
}

/**
 * The keys at `url`, fetched when first needed and again after `jwksMaxAgeMs`, or sooner when a
 * token names a key not among them (the provider rotated its keys). Tokens with made-up key ids
 * cause at most one fetch per tenth of the age, so they cannot flood the provider. At most one
 * fetch is in flight; after a failed one the next waits, from `jwksRetryMinMs` doubling up to
 * `jwksRetryMaxMs`, so that a provider that is down is not asked again by every request. Meanwhile
 * the keys fetched last are used, or, before any fetch succeeded, the last failure is thrown at once.
 */
export function cachedKeySet(
  url: string,
  options: KeySetOptions,
): (c: Context) => Promise<HonoJsonWebKey[]> {
  const { log, jwksMaxAgeMs = 300_000, jwksRetryMinMs = 1_000, jwksRetryMaxMs = 30_000 } = options;
  const minRefetchMs = jwksMaxAgeMs / 10;
  let keys: HonoJsonWebKey[] | undefined;
  let fetchedAt = 0;
  let fetching: Promise<HonoJsonWebKey[]> | undefined;
  // The failures in a row, the last of them, and when the next fetch may go out.
  let failures = 0;
  let lastFailure: unknown;
  let retryAt = 0;

  async function fetchKeys(): Promise<HonoJsonWebKey[]> {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      if (!response.ok) throw new Error(`The key set at ${url} answered ${response.status}`);
      const body = await response.json() as { keys?: unknown };
      if (!Array.isArray(body.keys)) throw new Error(`The key set at ${url} has no keys list`);
      keys = body.keys as HonoJsonWebKey[];
    } catch (error) {
      // hono/jwk answers 503-worthy failures only when they are plain Errors: a TypeError (the
      // provider refused the connection) or a timeout would become a 401 for a good token.
      const failure = error instanceof Error && error.constructor === Error
        ? error
        : new Error(`Cannot fetch the key set at ${url}`, { cause: error });
      failures++;
      lastFailure = failure;
      const waitMs = backoffDelayMs(failures, {
        initialDelayMs: jwksRetryMinMs,
        maxDelayMs: jwksRetryMaxMs,
        exact: true,
      });
      retryAt = Date.now() + waitMs;
      if (failures === 1) {
        log?.warn(
          keys
            ? "cannot refresh the JWKS key set, using the last one"
            : "cannot fetch the JWKS key set, so no token can be checked",
          { error: describeError(failure), retry_in_ms: waitMs },
        );
      }
      throw failure;
    }
    if (failures > 0) log?.info("fetched the JWKS key set again", { failures });
    failures = 0;
    fetchedAt = Date.now();
    return keys;
  }

  return async function currentKeys(c) {
    const now = Date.now();
    const age = now - fetchedAt;
    const wanted = kidOf(tokenOf(c, options.cookie));
    const unknown = wanted !== undefined && !keys?.some((key) => key.kid === wanted);
    if (keys && age < jwksMaxAgeMs && !(unknown && age >= minRefetchMs)) return keys;
    if (!fetching && now < retryAt) {
      if (keys) return keys;
      // The very error of the last fetch: the caller can tell that it was already said.
      throw lastFailure;
    }
    // Concurrent requests share one fetch.
    fetching ??= fetchKeys().finally(() => fetching = undefined);
    try {
      return await fetching;
    } catch (error) {
      if (!keys) throw error;
      return keys;
    }
  };
}

/** The `kid` in the header of `token`, if it has one. */
function kidOf(token: string | undefined): string | undefined {
  if (!token) return undefined;
  try {
    return decode(token).header.kid;
  } catch {
    return undefined;
  }
}
