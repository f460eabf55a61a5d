/**
 * Who is calling: a bearer token checked by Hono's own middleware, `hono/jwt` with a shared HS256
 * secret or `hono/jwk` with the keys an identity provider publishes at a JWKS URL. The token's
 * `sub` is the student; a token whose `role` is `admin`, or whose `roles` list holds it, may act
 * for anyone. Without a secret or a JWKS URL every caller may do anything, as in the seed: for
 * local use only, and the service says so once at start.
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { jwt } from "hono/jwt";
import { jwk } from "hono/jwk";
import type { AsymmetricAlgorithm } from "hono/utils/jwt/jwa";
import type { JWTPayload } from "hono/utils/jwt/types";
import { describeError, type Logger } from "./log.ts";
import { bearerTokenOf, cachedKeySet, tokenOf } from "./key_set.ts";

// For a tool that calls a service on its caller's behalf, with the token it was given.
export { bearerTokenOf, tokenOf };

/** How tokens are checked: a shared HS256 secret, or an identity provider's JWKS URL. */
export type AuthKeys = { jwtSecret: string } | { jwksUrl: string };

/** What a service needs to check tokens; see {@linkcode authenticate}. */
export type AuthConfig = AuthKeys & {
  /** The `aud` a token must name, when set: tokens the provider issued to other apps fail. */
  audience?: string;
  /** The `iss` a token must name, when set. */
  issuer?: string;
};

/** The role that may act for any student. */
export const ADMIN_ROLE = "admin";

/** Who made a request, as {@linkcode authenticate} found it. */
export interface Caller {
  /** The token's `sub`: the student. Undefined when authentication is off. */
  userId?: string;
  /** The token's `role` and `roles` claims, merged. */
  roles: readonly string[];
  /** True when authentication is off: the caller may do anything. */
  open: boolean;
}

// As hono/jwt does for its payload: every app's `c.get("caller")` is typed.
declare module "hono" {
  interface ContextVariableMap {
    caller?: Caller;
  }
}

/** Options for {@linkcode authenticate}. */
export interface AuthenticateOptions {
  /** Says once that authentication is off, or why a key set could not be fetched. */
  log?: Logger;
  /**
   * How long fetched JWKS keys are used before they are fetched again, in milliseconds. A token
   * naming a key not among them makes them fetched sooner, but not before a tenth of this age.
   * @default {300000}
   */
  jwksMaxAgeMs?: number;
  /**
   * A cookie that carries the token when the request has no `Authorization` header: for a browser
   * page, whose navigations and `EventSource` cannot send one. @default {none: the header only}
   */
  cookie?: string;
}

/** The asymmetric algorithms a JWKS key may sign with; HS256 needs the shared secret instead. */
const ASYMMETRIC: AsymmetricAlgorithm[] = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];

/**
 * Middleware that checks the request's bearer token and sets `caller`; a missing, malformed,
 * expired or forged token is answered `401` with a JSON error and a `WWW-Authenticate` challenge.
 * A token must carry `sub` (the student, 1-128 characters) and `exp`. With `config` undefined
 * every request passes as an open caller, and `log` gets one warning saying so.
 */
export function authenticate(
  config: AuthConfig | undefined,
  options: AuthenticateOptions = {},
): MiddlewareHandler {
  const { log } = options;
  if (!config) {
    log?.warn(
      "authentication is off: every caller may act for any student; set AUTH_JWT_SECRET or " +
        "AUTH_JWKS_URL before exposing this service",
    );
    const open: Caller = { roles: [], open: true };
    return async function allowEveryone(c, next) {
      c.set("caller", open);
      await next();
    };
  }
  // Hono checks exp, nbf and iat to the second, with no leeway: they are checked below instead.
  const verification = {
    aud: config.audience,
    iss: config.issuer,
    exp: false,
    nbf: false,
    iat: false,
  };
  const { cookie } = options;
  const check = "jwtSecret" in config
    ? jwt({ secret: config.jwtSecret, alg: "HS256", verification, cookie })
    : jwk({ keys: cachedKeySet(config.jwksUrl, options), alg: ASYMMETRIC, verification, cookie });
  const verified = new VerifiedTokens();
  // The key set fails with the same error until its next fetch: say each failure once.
  let lastUnchecked: unknown;
  return async function authenticateBearer(c, next) {
    const token = tokenOf(c, cookie);
    const known = token === undefined ? undefined : verified.get(token);
    if (known) {
      c.set("caller", known);
      return await next();
    }
    try {
      await check(c, () => Promise.resolve());
    } catch (error) {
      if (error instanceof HTTPException && error.status === 401) return unauthorized(c, error);
      // The key set could not be fetched: the token may well be good, so this is no 401.
      if (error !== lastUnchecked) {
        log?.warn("cannot check a bearer token", { error: describeError(error) });
        lastUnchecked = error;
      }
      return c.json({ error: "cannot check tokens now, try again later" }, 503);
    }
    const payload = c.get("jwtPayload") as JWTPayload;
    const caller = callerFrom(payload, Date.now() / 1000);
    if (typeof caller === "string") {
      return unauthorized(c, new HTTPException(401, { message: caller }));
    }
    verified.remember(token!, caller, payload.exp! + CLOCK_LEEWAY_S);
    c.set("caller", caller);
    await next();
  };
}

/**
 * How far, in seconds, the clocks of the identity provider and of this machine may disagree:
 * `exp` is honoured this much after it passed, `nbf` and `iat` this much before they come. Without
 * it a token minted on a clock a second ahead is refused at once, and one near its `exp` flaps.
 */
export const CLOCK_LEEWAY_S = 30;

/** How long a verified token is taken on trust, in milliseconds, at most: its `exp` comes first. */
const VERIFIED_FOR_MS = 60_000;
/** How many verified tokens are remembered; the oldest is forgotten first. */
const VERIFIED_MAX = 1_000;

/**
 * Tokens verified lately and who they name, so that a student's next request costs a lookup
 * rather than a signature check: ES256 and RS256 take about a millisecond each in Deno's WebCrypto,
 * which would cap a service near a thousand requests a second per core. Keyed by the whole token,
 * so nothing but the very token verified is let through; a key withdrawn from the key set stops
 * its tokens within {@linkcode VERIFIED_FOR_MS}.
 */
class VerifiedTokens {
  #tokens = new Map<string, { caller: Caller; untilMs: number }>();

  get(token: string): Caller | undefined {
    const entry = this.#tokens.get(token);
    if (!entry) return undefined;
    if (entry.untilMs > Date.now()) return entry.caller;
    this.#tokens.delete(token);
    return undefined;
  }

  /** Takes `token` on trust until `untilSeconds` (unix seconds) at most. */
  remember(token: string, caller: Caller, untilSeconds: number): void {
    // Map keeps insertion order: the first key is the oldest.
    if (this.#tokens.size >= VERIFIED_MAX) this.#tokens.delete(this.#tokens.keys().next().value!);
    const untilMs = Math.min(untilSeconds * 1000, Date.now() + VERIFIED_FOR_MS);
    this.#tokens.set(token, { caller, untilMs });
  }
}

/**
 * The caller a token with a good signature names at `nowSeconds`, or why it names none: its times
 * are checked here with {@linkcode CLOCK_LEEWAY_S}.
 */
function callerFrom(payload: JWTPayload, nowSeconds: number): Caller | string {
  const { sub, exp, nbf, iat, role, roles } = payload;
  if (typeof sub !== "string" || sub.length < 1 || sub.length > 128) {
    return "token verification failure: sub must name the user in 1-128 characters";
  }
  // A token that never expires cannot be taken back: refuse to honour one.
  if (exp === undefined) return "token verification failure: exp is missing";
  if (!isTime(exp) || exp + CLOCK_LEEWAY_S <= nowSeconds) {
    return "token verification failure: the token expired";
  }
  if (nbf !== undefined && (!isTime(nbf) || nbf - CLOCK_LEEWAY_S > nowSeconds)) {
    return "token verification failure: the token is not valid yet (nbf)";
  }
  if (iat !== undefined && (!isTime(iat) || iat - CLOCK_LEEWAY_S > nowSeconds)) {
    return "token verification failure: the token was issued in the future (iat)";
  }
  const granted = [role, ...(Array.isArray(roles) ? roles : [])]
    .filter((r): r is string => typeof r === "string");
  return { userId: sub, roles: granted, open: false };
}

/** True for a JWT NumericDate: a finite number of seconds. */
function isTime(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

function unauthorized(c: Context, error: HTTPException): Response {
  const challenge = error.getResponse().headers.get("WWW-Authenticate") ??
    `Bearer error="invalid_token"`;
  // Hono's own message for a bad signature or claim is a bare "Unauthorized".
  const reason = error.message === "Unauthorized" ? "token verification failure" : error.message;
  return c.json({ error: `a valid bearer token is required: ${reason}` }, 401, {
    "WWW-Authenticate": challenge,
  });
}

/** The caller {@linkcode authenticate} set; throws if the route forgot to authenticate. */
export function callerOf(c: Context): Caller {
  const caller = c.get("caller");
  if (!caller) throw new Error("Cannot tell who is calling as the route does not authenticate");
  return caller;
}

/**
 * The student whose orders and notifications `caller` is limited to; undefined for an admin, and
 * for everyone while authentication is off.
 */
export function limitedTo(caller: Caller): string | undefined {
  return caller.open || caller.roles.includes(ADMIN_ROLE) ? undefined : caller.userId;
}

/** True when `caller` may see and act on what belongs to `userId`: its owner, or an admin. */
export function mayActFor(caller: Caller, userId: string): boolean {
  const only = limitedTo(caller);
  return only === undefined || only === userId;
}

/**
 * Middleware, after {@linkcode authenticate}, that answers `403` with a JSON error unless the
 * caller has `role` (or authentication is off).
 */
export function requireRole(role: string): MiddlewareHandler {
  return async function checkRole(c, next) {
    const caller = callerOf(c);
    if (!caller.open && !caller.roles.includes(role)) {
      return c.json({ error: `this needs a token with the ${role} role` }, 403);
    }
    await next();
  };
}
