/**
 * The harness's secure mode: stacks whose services run as a hardened deployment runs them, each as
 * a least-privilege broker user of its own and with bearer tokens required, and requests that
 * carry an admin's token. `HARNESS_SECURE=1` turns it on for every stack and request of the
 * process, so that the whole suite can run that way; a test can also ask for it one stack at a time.
 * @module
 */
import { sign } from "hono/jwt";

/** True when `HARNESS_SECURE=1`: every stack is secure unless it says otherwise. */
export const HARNESS_SECURE: boolean = Deno.env.get("HARNESS_SECURE") === "1";

/**
 * Whether a test whose faults are not the broker users' (a node, the network, a database, a clock)
 * runs in this pass: once, in the plain pass; the secure pass (`HARNESS_SECURE=1`) would prove the
 * same again, so it says so in a line and skips it. `name` is the test file's, for that line.
 */
export function plainPassOnly(name: string): boolean {
  if (HARNESS_SECURE) {
    console.log(`${name}: runs in the plain pass only, skipped with HARNESS_SECURE=1`);
  }
  return !HARNESS_SECURE;
}

/** The HS256 secret of this process's secure stacks (`AUTH_JWT_SECRET`), new in every run. */
export const HARNESS_JWT_SECRET: string = crypto.randomUUID() + crypto.randomUUID();

/** How long the harness's tokens last, in seconds: longer than any run. */
const TOKEN_LIFETIME_S = 86_400;

/** A token for `sub`, signed with {@linkcode HARNESS_JWT_SECRET}; `role: "admin"` acts for anyone. */
export async function harnessToken(sub: string, claims: { role?: string } = {}): Promise<string> {
  const exp = Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_S;
  return await sign({ sub, exp, ...claims }, HARNESS_JWT_SECRET, "HS256");
}

let adminHeader: Promise<string> | undefined;

/**
 * `headers` with an admin's bearer token added, in secure mode and unless they hold one already:
 * how the harness's probes reach a secure stack's APIs.
 */
export async function withHarnessAuth(headers?: HeadersInit): Promise<Headers> {
  const result = new Headers(headers);
  if (HARNESS_SECURE && !result.has("authorization")) {
    adminHeader ??= harnessToken("harness", { role: "admin" }).then((token) => `Bearer ${token}`);
    result.set("authorization", await adminHeader);
  }
  return result;
}
