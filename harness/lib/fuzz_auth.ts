/**
 * The `Authorization` headers the fuzzer tries: valid bearer tokens for the requests meant to
 * succeed, and every way a token can be missing, malformed, forged or wrong. A case holds the
 * choice, not the token, so that a counterexample reads as "expired token" rather than as base64;
 * {@linkcode authorizationOf} makes the header when the case is sent.
 * @module
 */
import fc from "fast-check";
import { sign } from "hono/jwt";
import { HARNESS_JWT_SECRET } from "./secure_mode.ts";

/** How a fuzzed request authenticates. */
export type AuthChoice =
  /** No `Authorization` header. */
  | { kind: "none" }
  /** A valid token with `role: "admin"`: may act for anyone. */
  | { kind: "admin" }
  /** A valid token whose `sub` is `sub`. */
  | { kind: "student"; sub: string }
  /** A token that a secure service must refuse with 401: `why` says how it is bad. */
  | { kind: "bad"; why: BadToken; text?: string }
  /** A valid token in a header whose form a server may or may not take (`bearer` lower-cased). */
  | { kind: "odd"; header: "lowercase scheme" | "extra spaces" };

/** The ways a bearer token is wrong. */
export type BadToken =
  | "garbage"
  | "no token"
  | "basic scheme"
  | "wrong secret"
  | "expired"
  | "no sub"
  | "long sub"
  | "no exp"
  | "alg none"
  | "huge";

/** The student a valid token names when a case has no `user_id` of its own. */
export const FUZZ_STUDENT = "fuzz-student";

/** True when `choice` is a token a secure service takes. */
export function isValidAuth(choice: AuthChoice): boolean {
  return choice.kind === "admin" || choice.kind === "student";
}

/** Every bad token, and garbage of the fuzzer's making. */
export function badAuthArbitrary(): fc.Arbitrary<AuthChoice> {
  return fc.oneof(
    fc.constantFrom<BadToken>(
      "no token",
      "basic scheme",
      "wrong secret",
      "expired",
      "no sub",
      "long sub",
      "no exp",
      "alg none",
      "huge",
    ).map((why): AuthChoice => ({ kind: "bad", why })),
    fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 200 })
      .filter((text) => /^[\x21-\x7e]+$/.test(text))
      .map((text): AuthChoice => ({ kind: "bad", why: "garbage", text })),
  );
}

/** The `Authorization` header value for `choice`, or undefined for none. */
export async function authorizationOf(choice: AuthChoice): Promise<string | undefined> {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  switch (choice.kind) {
    case "none":
      return undefined;
    case "admin":
      return `Bearer ${await cachedToken("fuzz-admin", { role: "admin" })}`;
    case "student":
      return `Bearer ${await cachedToken(choice.sub, {})}`;
    case "odd": {
      const token = await cachedToken(FUZZ_STUDENT, {});
      return choice.header === "lowercase scheme" ? `bearer ${token}` : `Bearer   ${token}`;
    }
    case "bad":
      switch (choice.why) {
        case "garbage":
          return `Bearer ${choice.text}`;
        case "no token":
          return "Bearer";
        case "basic scheme":
          return `Basic ${btoa("fuzz:fuzz")}`;
        case "wrong secret":
          return `Bearer ${await sign({ sub: FUZZ_STUDENT, exp }, "not-the-secret", "HS256")}`;
        case "expired":
          return `Bearer ${await sign({ sub: FUZZ_STUDENT, exp: exp - 7200 }, HARNESS_JWT_SECRET)}`;
        case "no sub":
          return `Bearer ${await sign({ exp }, HARNESS_JWT_SECRET)}`;
        case "long sub":
          return `Bearer ${await sign({ sub: "s".repeat(129), exp }, HARNESS_JWT_SECRET)}`;
        case "no exp":
          return `Bearer ${await sign({ sub: FUZZ_STUDENT }, HARNESS_JWT_SECRET)}`;
        case "alg none": {
          const part = (value: unknown) => btoa(JSON.stringify(value)).replace(/=+$/, "");
          return `Bearer ${part({ alg: "none", typ: "JWT" })}.${part({ sub: FUZZ_STUDENT, exp })}.`;
        }
        case "huge":
          return `Bearer ${"A".repeat(20_000)}.${"B".repeat(10_000)}.C`;
      }
  }
}

// Signing costs a WebCrypto call: a token is made once per student and reused, as a client would.
const tokens = new Map<string, Promise<string>>();

function cachedToken(sub: string, claims: { role?: string }): Promise<string> {
  const key = `${claims.role ?? ""}\0${sub}`;
  let token = tokens.get(key);
  if (!token) {
    if (tokens.size > 10_000) tokens.clear();
    const exp = Math.floor(Date.now() / 1000) + 86_400;
    token = sign({ sub, exp, ...claims }, HARNESS_JWT_SECRET, "HS256");
    tokens.set(key, token);
  }
  return token;
}
