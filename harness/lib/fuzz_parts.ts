/**
 * The parts of a fuzzed request that every route shares: method names, unknown paths and odd
 * spellings of known ones, query strings, extra headers (many, huge, repeated), and the manglings
 * that make a request no valid HTTP/1.1 at all, which Deno's HTTP server refuses before any
 * service code runs.
 * @module
 */
import fc from "fast-check";
import type { FuzzCase } from "./fuzz_cases.ts";
import { STANDARD_METHODS } from "../../shared/metrics.ts";

const TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** An RFC 9110 token (a method or header name) of `min`-`max` characters. */
export function tokenArbitrary(min: number, max: number): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: min, maxLength: max });
}

/**
 * A method none of `allowed` is: another standard one, a lower-cased one, or a made-up name of up
 * to 4,000 characters. Never CONNECT, whose request target is a host and port, not a path.
 */
export function wrongMethodArbitrary(allowed: readonly string[]): fc.Arbitrary<string> {
  const taken = new Set([...allowed, ...allowed.includes("GET") ? ["HEAD"] : [], "CONNECT"]);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom(...[...STANDARD_METHODS].filter((m) => !taken.has(m))),
    },
    { weight: 1, arbitrary: fc.constantFrom("get", "post", "Get", "pOST", "head") },
    { weight: 3, arbitrary: tokenArbitrary(1, 20) },
    { weight: 1, arbitrary: tokenArbitrary(100, 4000) },
  ).filter((method) => !taken.has(method));
}

/** A query string, `?` included: encoded unicode, repeats, empty values, long ones. */
export function queryArbitrary(): fc.Arbitrary<string> {
  const part = fc.oneof(
    fc.string({ maxLength: 30 }).map(encodeURIComponent),
    fc.constantFrom("", "%", "%ZZ", "%00", "a=b=c", "&&", "=", "%E2%82", "+", "a[]=1"),
  );
  return fc.oneof(
    fc.array(fc.tuple(part, part), { maxLength: 6 }).map((pairs) =>
      "?" + pairs.map(([k, v]) => `${k}=${v}`).join("&")
    ),
    fc.integer({ min: 1_000, max: 40_000 }).map((n) => `?q=${"q".repeat(n)}`),
  );
}

/** A path no service has: random segments, encoded bytes, dot segments, very long ones. */
export function unknownPathArbitrary(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.webPath().map((path) => path.startsWith("/") ? path : `/${path}`),
    fc.array(fc.string({ minLength: 1, maxLength: 12 }).map(encodeURIComponent), {
      minLength: 1,
      maxLength: 6,
    }).map((segments) => "/" + segments.join("/")),
    fc.constantFrom(
      "/",
      "/%ZZ",
      "/%00",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/../../etc/passwd",
      "/orders/../../x",
      "/orders/x/cancel/y",
      "/order/x",
      "//",
      "/%F0%9F%8D%94",
      "/%C0%AF",
      "/.well-known/x",
    ),
    fc.integer({ min: 1_000, max: 60_000 }).map((n) => "/" + "p".repeat(n)),
  );
}

/** Another spelling of a known path, which a router may or may not take for it. */
export function pathVariantArbitrary(): fc.Arbitrary<(path: string) => string> {
  return fc.constantFrom(
    function trailingSlash(path: string): string {
      return `${path}/`;
    },
    function doubleSlash(path: string): string {
      return `/${path}`;
    },
    function dotSegment(path: string): string {
      return `/x/..${path}`;
    },
    function currentDirectory(path: string): string {
      return `/.${path}`;
    },
    function encodedLetter(path: string): string {
      return `/%${path.charCodeAt(1).toString(16)}${path.slice(2)}`;
    },
    function upperCase(path: string): string {
      return path.toUpperCase();
    },
    function absoluteForm(path: string): string {
      return `http://127.0.0.1${path}`;
    },
  );
}

/** Header names that the fuzzer sets on purpose, kept out of the random ones. */
const SET_ON_PURPOSE = new Set([
  "host",
  "connection",
  "content-length",
  "transfer-encoding",
  "content-type",
  "content-encoding",
  "authorization",
  "idempotency-key",
  "expect",
  "upgrade",
  "te",
  "trailer",
]);

/** Visible ASCII and the tab, plus bytes above 0x7f (obs-text): what a field value may hold. */
function fieldValueArbitrary(maxLength: number): fc.Arbitrary<string> {
  const byte = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
    { weight: 1, arbitrary: fc.constantFrom(0x09, 0x80, 0xc3, 0xff) },
  );
  return fc.array(byte, { maxLength }).map((codes) => String.fromCharCode(...codes).trim());
}

/**
 * Extra headers a service should ignore or refuse cleanly: a few random ones mostly, sometimes
 * 30-90 of them, a value of up to 40 KB, odd `traceparent`, `Expect`, `Accept-Charset` values.
 * All within Deno's limits (a head under 64 KiB, at most ~100 fields).
 */
export function extraHeadersArbitrary(): fc.Arbitrary<Array<[string, string]>> {
  const name = tokenArbitrary(1, 30).filter((n) => !SET_ON_PURPOSE.has(n.toLowerCase()));
  const field = fc.tuple(name, fieldValueArbitrary(60));
  return fc.oneof(
    { weight: 6, arbitrary: fc.array(field, { maxLength: 4 }) },
    { weight: 1, arbitrary: fc.array(field, { minLength: 30, maxLength: 90 }) },
    {
      weight: 1,
      arbitrary: fc.tuple(name, fc.integer({ min: 1_000, max: 40_000 })).map((
        [n, size],
      ): Array<[string, string]> => [[n, "v".repeat(size)]]),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom<Array<[string, string]>>(
        [["traceparent", "00-zzzz-zzzz-01"]],
        [["traceparent", "00-" + "0".repeat(32) + "-" + "0".repeat(16) + "-01"]],
        [["traceparent", "ff-" + "a".repeat(200)]],
        [["Accept-Charset", "utf-16"]],
        [["Accept", "text/html"]],
        [["Accept-Encoding", "gzip, br, zstd"]],
        [["Cookie", "a=" + "b".repeat(2000)]],
        [["X-Forwarded-For", "1.2.3.4, " + "5.6.7.8, ".repeat(200)]],
      ),
    },
  );
}

/** A change that makes a case invalid HTTP/1.1, and why. */
export interface Mangling {
  why: string;
  (c: FuzzCase): FuzzCase;
}

function mangling(why: string, change: (c: FuzzCase) => FuzzCase): Mangling {
  return Object.assign(change, { why });
}

/**
 * Manglings that make a request something other than valid HTTP/1.1, or beyond Deno's server
 * limits: a control byte in a field value, a field name or method that is no token, raw bytes in
 * the target, over ~128 fields, a head over 64 KiB, conflicting or malformed framing.
 */
export function beyondHttpArbitrary(): fc.Arbitrary<Mangling> {
  const control = fc.integer({ min: 0, max: 0x1f }).filter((c) => c !== 9 && c !== 10 && c !== 13)
    .map((c) => String.fromCharCode(c));
  const addHeader = (c: FuzzCase, name: string, value: string): FuzzCase => ({
    ...c,
    headers: [...c.headers, [name, value]],
  });
  return fc.oneof(
    fc.oneof(control, fc.constant("\x7f")).map((byte) =>
      mangling(
        `control byte 0x${byte.charCodeAt(0).toString(16)} in a field value`,
        (c) => addHeader(c, "X-Fuzz", `a${byte}b`),
      )
    ),
    fc.constantFrom("X Fuzz", "X(Fuzz)", "X@Fuzz", "X\x80Fuzz", 'X"Fuzz', "").map((name) =>
      mangling(`field name ${JSON.stringify(name)} is no token`, (c) => addHeader(c, name, "v"))
    ),
    fc.integer({ min: 130, max: 300 }).map((n) =>
      mangling(`${n} more header fields`, (c) => ({
        ...c,
        headers: [
          ...c.headers,
          ...Array.from({ length: n }, (_, i): [string, string] => [`X-F${i}`, "v"]),
        ],
      }))
    ),
    fc.integer({ min: 70_000, max: 150_000 }).map((size) =>
      mangling(`a ${size}-byte field value`, (c) => addHeader(c, "X-Fuzz", "v".repeat(size)))
    ),
    fc.constantFrom(" ", "\x7f", "\x80", "\xe9", "\x01", "\xff").map((byte) =>
      mangling(`raw byte 0x${byte.charCodeAt(0).toString(16)} in the target`, (c) => ({
        ...c,
        target: `${c.target}${byte}x`,
      }))
    ),
    fc.constantFrom("G(T", "GET\x7f", "G\x80T", "G@T", ",", "GET/", "[GET]").map((method) =>
      mangling(`method ${JSON.stringify(method)} is no token`, (c) => ({ ...c, method }))
    ),
    fc.constant(
      mangling("CONNECT with a path for a target", (c) => ({ ...c, method: "CONNECT" })),
    ),
    fc.constantFrom<Array<[string, string]>>(
      [["Content-Length", "1"], ["Content-Length", "2"]],
      [["Content-Length", "abc"]],
      [["Content-Length", "-1"]],
      [["Content-Length", "1"], ["Transfer-Encoding", "chunked"]],
      [["Transfer-Encoding", "x-unknown"]],
      [["Host", "a"], ["Host", "b"]],
    ).map((fields) =>
      mangling(`framing ${JSON.stringify(fields)}`, (c) => ({
        ...c,
        headers: [...c.headers.filter(([n]) => !/^transfer-encoding$/i.test(n)), ...fields],
        body: undefined,
      }))
    ),
  );
}
