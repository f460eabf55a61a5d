/**
 * The fuzzer's requests: one fast-check arbitrary per service that aims at each of its routes
 * (and at `/health`, `/ready`, `/metrics`, unknown paths and wrong methods) with generated methods,
 * paths, headers, tokens and bodies, each case carrying what the contract says of it: taken (2xx),
 * refused (4xx), either, or refused by Deno's HTTP server before the service sees it.
 * @module
 */
import fc from "fast-check";
import type { ServiceName } from "./service_process.ts";

import { type AuthChoice, badAuthArbitrary, FUZZ_STUDENT, isValidAuth } from "./fuzz_auth.ts";
import { orderBodyArbitrary, type Verdict } from "./fuzz_bodies.ts";
import {
  beyondHttpArbitrary,
  extraHeadersArbitrary,
  type Mangling,
  pathVariantArbitrary,
  queryArbitrary,
  unknownPathArbitrary,
  wrongMethodArbitrary,
} from "./fuzz_parts.ts";
import { chunked } from "./fuzz_wire.ts";

/** One generated request, before the fuzzer fills in an order id and a token. */
export interface FuzzCase {
  service: ServiceName;
  /** The route it aims at, for the counts: "POST /order", "unknown path"… */
  route: string;
  method: string;
  /**
   * Path and query as sent; {@linkcode ORDER_REF} stands for an order the fuzzer placed, or an
   * unknown id while there is none.
   */
  target: string;
  headers: Array<[string, string]>;
  auth: AuthChoice;
  body?: Uint8Array;
  /** Send this many bytes of the body, then stall (see `WireRequest.stallAfter`). */
  stallAfter?: number;
  /** What the body is, for a counterexample. */
  bodyLabel?: string;
  transport: "fetch" | "raw";
  /** What the contract says of everything but the token and the order id. */
  verdict: Verdict;
  /** True when the route wants a bearer token in a secure stack. */
  authenticated: boolean;
  /** How a known order id changes the verdict: readable (ok) or in a state it may refuse (maybe). */
  orderVerdict?: Verdict;
  /** How an unknown order id changes it: "not found" (bad) unless the id is just a filter. */
  unknownOrderVerdict?: Verdict;
  /** The `user_id` a `POST /order` body names; undefined when the token's subject must serve. */
  bodyUserId?: string;
  /** True for a `POST /order` body that is valid but names no `user_id`. */
  needsTokenUser?: boolean;
  /** Why Deno's HTTP server refuses it before the service sees it, if it does. */
  beyondHttp?: string;
}

/** Stands for an order id in {@linkcode FuzzCase.target}, filled in when the case is sent. */
export const ORDER_REF = "{order}";

/** Options for {@linkcode fuzzCaseArbitrary}. */
export interface FuzzCaseOptions {
  /** True when the stack wants bearer tokens: valid requests then carry one. @default {false} */
  secure?: boolean;
}

/** Cases for `service`'s routes and for what every service serves. */
export function fuzzCaseArbitrary(
  service: ServiceName,
  options: FuzzCaseOptions = {},
): fc.Arbitrary<FuzzCase> {
  const { secure = false } = options;
  const own: Array<fc.Arbitrary<FuzzCase>> = service === "order"
    ? [placeOrder(secure), readOrder(secure), cancelOrder(secure)]
    : service === "inventory"
    ? [reservation(), stock()]
    : [notifications(secure)];
  const cases = fc.oneof(
    { weight: 4 * 3 / own.length, arbitrary: fc.oneof(...own) },
    { weight: 1, arbitrary: common(service) },
    { weight: 1, arbitrary: unknownPath(service) },
    { weight: 1, arbitrary: wrongMethod(service) },
  );
  return fc.tuple(cases, sometimes(beyondHttpArbitrary(), 12)).map(([c, mangling]) =>
    mangling ? mangle(c, mangling) : c
  );
}

/** The routes of each service, as `[method, path pattern]`; `:id` is any one segment. */
export const ROUTES: Record<ServiceName, Array<[string, string]>> = {
  order: [["POST", "/order"], ["POST", "/orders"], ["GET", "/orders/:id"], [
    "POST",
    "/orders/:id/cancel",
  ]],
  inventory: [["GET", "/reservations/:id"], ["GET", "/stock"]],
  notification: [["GET", "/notifications"]],
};

const COMMON: Array<[string, string]> = [["GET", "/health"], ["GET", "/ready"], [
  "GET",
  "/metrics",
]];

/** Auth for a route that wants a token: valid ones most of the time, so that orders go through. */
function authArbitrary(sub: fc.Arbitrary<string>): fc.Arbitrary<AuthChoice> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant<AuthChoice>({ kind: "admin" }) },
    { weight: 3, arbitrary: sub.map((s): AuthChoice => ({ kind: "student", sub: s })) },
    { weight: 1, arbitrary: fc.constant<AuthChoice>({ kind: "none" }) },
    { weight: 2, arbitrary: badAuthArbitrary() },
    {
      weight: 1,
      arbitrary: fc.constantFrom<AuthChoice>(
        { kind: "odd", header: "lowercase scheme" },
        { kind: "odd", header: "extra spaces" },
      ),
    },
  );
}

const SAME_STUDENT = "\u0000same";

/** Content types of a `POST /order`, and whether the contract takes them. */
const CONTENT_TYPES: Array<[string | undefined, Verdict]> = [
  ["application/json", "ok"],
  ["application/json; charset=utf-8", "ok"],
  ["APPLICATION/JSON", "ok"],
  ["application/vnd.campus+json", "ok"],
  ["application/json; charset=latin1", "maybe"],
  ["application/json; charset=utf-16", "maybe"],
  ["application/json, text/plain", "maybe"],
  [undefined, "bad"],
  ["", "bad"],
  ["text/plain", "bad"],
  ["application/x-www-form-urlencoded", "bad"],
  ["multipart/form-data; boundary=x", "bad"],
  ["application/jsonx", "bad"],
  ["json", "bad"],
  ["application/xml", "bad"],
  ["*/*", "bad"],
];

function contentTypeArbitrary(): fc.Arbitrary<[string | undefined, Verdict]> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant(CONTENT_TYPES[0]) },
    { weight: 4, arbitrary: fc.constantFrom(...CONTENT_TYPES) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n): [string, Verdict] => [
        `application/json; p=${"a".repeat(n)}`,
        "maybe",
      ]),
    },
  );
}

/**
 * `Idempotency-Key` values: none, keys the contract takes (a reused one may meet another body:
 * 409, so "maybe"), and keys it refuses (empty, over 255 characters).
 */
function idempotencyKeyArbitrary(): fc.Arbitrary<[string | undefined, Verdict]> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant<[undefined, Verdict]>([undefined, "ok"]) },
    {
      weight: 2,
      arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 255 })
        .filter((key) => /^[\x21-\x7e]+$/.test(key))
        .map((key): [string, Verdict] => [key, "maybe"]),
    },
    { weight: 1, arbitrary: fc.constant<[string, Verdict]>(["fuzz-key", "maybe"]) },
    { weight: 1, arbitrary: fc.constant<[string, Verdict]>(["", "bad"]) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 256, max: 4000 }).map((n): [string, Verdict] => [
        "k".repeat(n),
        "bad",
      ]),
    },
  );
}

/** `Content-Encoding` claims: none mostly; a coding the service may or may not refuse. */
function contentEncodingArbitrary(): fc.Arbitrary<string | undefined> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constantFrom("gzip", "br", "deflate", "identity", "x-unknown") },
  );
}

function placeOrder(secure: boolean): fc.Arbitrary<FuzzCase> {
  return fc.record({
    path: fc.constantFrom("/order", "/orders"),
    body: orderBodyArbitrary(),
    contentType: contentTypeArbitrary(),
    key: idempotencyKeyArbitrary(),
    encoding: contentEncodingArbitrary(),
    auth: authArbitrary(
      fc.oneof({ weight: 4, arbitrary: fc.constant(SAME_STUDENT) }, fc.constant("someone-else")),
    ),
    extra: extraHeadersArbitrary(),
    chunked: fc.boolean(),
    // Rare, as each one waits out HTTP_BODY_TIMEOUT.
    stall: sometimes(fc.double({ min: 0, max: 0.99, noNaN: true }), 400),
    transport: transportArbitrary(),
  }).map((r): FuzzCase => {
    const headers: Array<[string, string]> = [];
    if (r.contentType[0] !== undefined) headers.push(["Content-Type", r.contentType[0]]);
    if (r.key[0] !== undefined) headers.push(["Idempotency-Key", r.key[0]]);
    if (r.encoding) headers.push(["Content-Encoding", r.encoding]);
    headers.push(...r.extra);
    let body = r.body.bytes;
    // Chunked framing over the raw transport: the body limit must hold without a Content-Length.
    if (r.chunked && r.transport === "raw") {
      headers.push(["Transfer-Encoding", "chunked"]);
      body = chunked(body);
    }
    const auth = r.auth.kind === "student" && r.auth.sub === SAME_STUDENT
      ? { kind: "student" as const, sub: r.body.userId ?? FUZZ_STUDENT }
      : r.auth;
    if (r.stall !== undefined) {
      // A body that stops short: a JSON 408 once HTTP_BODY_TIMEOUT passes, whatever it holds.
      return {
        service: "order",
        route: `POST ${r.path}`,
        method: "POST",
        target: r.path,
        headers: [["Content-Type", "application/json"], ...r.extra],
        auth,
        body: r.body.bytes,
        bodyLabel: `${r.body.label}, stalled after ${
          Math.floor(r.stall * r.body.bytes.length)
        } bytes`,
        stallAfter: Math.floor(r.stall * r.body.bytes.length),
        transport: "raw",
        verdict: "bad",
        authenticated: secure,
      };
    }
    return {
      service: "order",
      route: `POST ${r.path}`,
      method: "POST",
      target: r.path,
      headers,
      auth,
      body,
      bodyLabel: r.body.label,
      transport: r.transport,
      verdict: worst(r.body.verdict, r.contentType[1], r.key[1], r.encoding ? "maybe" : "ok"),
      authenticated: secure,
      bodyUserId: r.body.userId,
      needsTokenUser: r.body.userId === undefined && r.body.verdict !== "bad",
    };
  });
}

/** An order id: one the fuzzer placed, or one no order has. */
function orderIdArbitrary(): fc.Arbitrary<[string, Verdict]> {
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant<[string, Verdict]>([ORDER_REF, "ok"]) },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.uuid(),
        fc.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/),
        fc.string({ minLength: 1, maxLength: 40 }).map(encodeURIComponent),
        fc.constantFrom("%00", "%ZZ", "..", ".", "%2e%2e", "%2F", "null", "0", "-1"),
        fc.integer({ min: 1_000, max: 40_000 }).map((n) => "x".repeat(n)),
      ).map((id): [string, Verdict] => [id, "bad"]),
    },
  );
}

function readOrder(secure: boolean): fc.Arbitrary<FuzzCase> {
  return orderIdRoute({
    service: "order",
    method: "GET",
    path: "/orders/{id}",
    auth: ownerAuth(),
    verdict: "ok",
    authenticated: secure,
  });
}

function cancelOrder(secure: boolean): fc.Arbitrary<FuzzCase> {
  return orderIdRoute({
    service: "order",
    method: "POST",
    path: "/orders/{id}/cancel",
    auth: ownerAuth(),
    body: sometimes(fc.uint8Array({ maxLength: 200 }), 4),
    // A REJECTED or EXPIRED order is a 409; a PENDING or CONFIRMED one is cancelled.
    verdict: "maybe",
    authenticated: secure,
  });
}

function reservation(): fc.Arbitrary<FuzzCase> {
  return orderIdRoute({
    service: "inventory",
    method: "GET",
    path: "/reservations/{id}",
    auth: noAuth(),
    // An order just placed may have no reservation yet.
    verdict: "maybe",
    authenticated: false,
  });
}

/** A route on one order's id, as {@linkcode orderIdRoute} aims at it. */
interface OrderIdRoute {
  service: ServiceName;
  method: "GET" | "POST";
  /** The path, `{id}` standing for the order id. */
  path: string;
  auth: fc.Arbitrary<AuthChoice>;
  /** A body to send, now and then. @default {none} */
  body?: fc.Arbitrary<Uint8Array | undefined>;
  /** What the contract says of a well-formed id, and of an order the fuzzer placed. */
  verdict: Verdict;
  authenticated: boolean;
}

/** Cases for a route on one order's id: a malformed or unknown id is refused, whatever the route. */
function orderIdRoute(route: OrderIdRoute): fc.Arbitrary<FuzzCase> {
  const parts = fc.tuple(orderIdArbitrary(), route.body ?? fc.constant(undefined));
  return routeCase(parts, route.auth, ([[id, idVerdict], body]) => ({
    service: route.service,
    route: `${route.method} ${route.path}`,
    method: route.method,
    target: route.path.replace("{id}", id),
    body,
    verdict: idVerdict === "bad" ? "bad" : route.verdict,
    authenticated: route.authenticated,
    orderVerdict: id === ORDER_REF ? route.verdict : undefined,
  }));
}

function stock(): fc.Arbitrary<FuzzCase> {
  return routeCase(queryArbitrary(), noAuth(), (query) => ({
    service: "inventory",
    route: "GET /stock",
    method: "GET",
    target: `/stock${query}`,
    verdict: "ok",
    authenticated: false,
  }));
}

function notifications(secure: boolean): fc.Arbitrary<FuzzCase> {
  const value = fc.oneof(
    fc.constant(ORDER_REF),
    fc.string({ maxLength: 60 }).map(encodeURIComponent),
    fc.integer({ min: 1_000, max: 30_000 }).map((n) => "v".repeat(n)),
  );
  const filter = fc.oneof(
    value.map((v): [string, Verdict] => [`?order_id=${v}`, "ok"]),
    value.map((v): [string, Verdict] => [`?user_id=${v}`, "ok"]),
    fc.tuple(value, value).map((
      [a, b],
    ): [string, Verdict] => [`?order_id=${a}&user_id=${b}`, "ok"]),
    fc.constant<[string, Verdict]>(["", "bad"]),
    queryArbitrary().map((q): [string, Verdict] => [q, "maybe"]),
  );
  return routeCase(filter, ownerAuth(), ([query, verdict], auth) => ({
    service: "notification",
    route: "GET /notifications",
    method: "GET",
    target: `/notifications${query}`,
    // A student's token is a filter of its own: without one in the query they see their own.
    verdict: verdict !== "bad" || !secure
      ? verdict
      : auth.kind === "student"
      ? "ok"
      : auth.kind === "odd"
      ? "maybe"
      : "bad",
    authenticated: secure,
    unknownOrderVerdict: "ok",
  }));
}

/** `/health`, `/ready` and `/metrics`, by GET or HEAD, with any token and any query. */
function common(service: ServiceName): fc.Arbitrary<FuzzCase> {
  const parts = fc.record({
    route: fc.constantFrom(...COMMON),
    head: fc.boolean(),
    query: sometimes(queryArbitrary(), 3).map((query) => query ?? ""),
    variant: sometimes(pathVariantArbitrary(), 4),
  });
  return routeCase(parts, noAuth(), (r) => ({
    service,
    route: `GET ${r.route[1]}`,
    method: r.head ? "HEAD" : "GET",
    target: (r.variant ? r.variant(r.route[1]) : r.route[1]) + r.query,
    verdict: r.variant ? "maybe" : "ok",
    authenticated: false,
  }));
}

/** A path no route of `service` has, by any method: a JSON 404. */
function unknownPath(service: ServiceName): fc.Arbitrary<FuzzCase> {
  const known = [...ROUTES[service], ...COMMON].map(([, path]) => patternOf(path));
  const parts = fc.tuple(
    unknownPathArbitrary().filter((path) => !known.some((p) => p.test(path.split("?")[0]))),
    fc.oneof(fc.constantFrom("GET", "POST", "PUT", "DELETE"), wrongMethodArbitrary([])),
  );
  return routeCase(parts, noAuth(), ([path, method]) => ({
    service,
    route: "unknown path",
    method,
    target: path,
    verdict: "bad",
    authenticated: false,
  }));
}

/** A known path by a method it does not take: a JSON 405 with `Allow`. */
function wrongMethod(service: ServiceName): fc.Arbitrary<FuzzCase> {
  const routes = [...ROUTES[service], ...COMMON];
  return fc.constantFrom(...routes).chain(([allowed, path]) => {
    const parts = fc.tuple(
      wrongMethodArbitrary(routes.filter(([, p]) => p === path).map(([m]) => m)),
      fc.constantFrom(ORDER_REF, "01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    );
    return routeCase(parts, noAuth(), ([method, id]) => ({
      service,
      route: `not ${allowed} ${path}`,
      method,
      target: path.replace(":id", id),
      verdict: "bad",
      authenticated: false,
    }));
  });
}

/** What a case says besides what {@linkcode routeCase} varies for every route alike. */
type RouteCaseCore = Omit<FuzzCase, "headers" | "auth" | "transport">;

/**
 * Cases for one route: `parts` are what the route varies, and `toCase` makes them into a case;
 * every route alike gets its token from `auth`, extra headers, and either transport.
 */
function routeCase<T>(
  parts: fc.Arbitrary<T>,
  auth: fc.Arbitrary<AuthChoice>,
  toCase: (parts: T, auth: AuthChoice) => RouteCaseCore,
): fc.Arbitrary<FuzzCase> {
  return fc.tuple(parts, auth, extraHeadersArbitrary(), transportArbitrary()).map((
    [own, auth, headers, transport],
  ) => ({ ...toCase(own, auth), headers, auth, transport }));
}

/** Tokens for a route a student reads their own orders by: theirs, or another student's. */
function ownerAuth(): fc.Arbitrary<AuthChoice> {
  return authArbitrary(fc.constantFrom(FUZZ_STUDENT, "someone-else"));
}

/** Tokens for a route that wants none: none at all, or bad ones that it must ignore. */
function noAuth(): fc.Arbitrary<AuthChoice> {
  return fc.oneof(fc.constant<AuthChoice>({ kind: "none" }), badAuthArbitrary());
}

function transportArbitrary(): fc.Arbitrary<"fetch" | "raw"> {
  return fc.constantFrom<"fetch" | "raw">("fetch", "raw");
}

/** `c` made into a request Deno's HTTP server refuses, as `mangling` says. */
function mangle(c: FuzzCase, mangling: Mangling): FuzzCase {
  return { ...mangling(c), transport: "raw", beyondHttp: mangling.why };
}

/** A route path such as `/orders/:id/cancel` as a regular expression, trailing slash allowed. */
function patternOf(path: string): RegExp {
  return new RegExp(`^${path.replace(/:id/g, "[^/]+")}/?$`);
}

/** `arbitrary`'s values one time in `n`, undefined otherwise (fc.option's `freq` is the reverse). */
function sometimes<T>(arbitrary: fc.Arbitrary<T>, n: number): fc.Arbitrary<T | undefined> {
  return fc.oneof(
    { weight: n - 1, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary },
  );
}

/** The least favourable of `verdicts`: bad over maybe over ok. */
export function worst(...verdicts: Verdict[]): Verdict {
  return verdicts.includes("bad") ? "bad" : verdicts.includes("maybe") ? "maybe" : "ok";
}

/** What the contract says a case is, now that its order id and token are known. */
export type Expectation = "accept" | "refuse" | "either" | "server refuses";

/** The expectation of `c` in a stack that is `secure` or not, its order id known or not. */
export function expectationOf(
  c: FuzzCase,
  options: { secure: boolean; knownOrder: boolean },
): Expectation {
  if (c.beyondHttp) return "server refuses";
  const verdicts: Verdict[] = [c.verdict];
  if (c.target.includes(ORDER_REF)) {
    verdicts.push(options.knownOrder ? c.orderVerdict ?? "ok" : c.unknownOrderVerdict ?? "bad");
  }
  if (options.secure && c.authenticated) {
    if (c.auth.kind === "odd") verdicts.push("maybe");
    else if (!isValidAuth(c.auth)) verdicts.push("bad");
    else if (c.auth.kind === "student") {
      // Another student's order is "not found"; another student's user_id is a 403.
      if (c.target.includes(ORDER_REF)) verdicts.push("maybe");
      if (c.bodyUserId !== undefined && c.bodyUserId !== c.auth.sub) verdicts.push("bad");
    }
  }
  if (c.needsTokenUser && !(options.secure && isValidAuth(c.auth))) {
    verdicts.push(options.secure && c.auth.kind === "odd" ? "maybe" : "bad");
  }
  const verdict = worst(...verdicts);
  return verdict === "ok" ? "accept" : verdict === "bad" ? "refuse" : "either";
}
