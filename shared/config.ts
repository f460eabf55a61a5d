/**
 * Service configuration: every environment variable of the README's configuration table, parsed
 * once at start with zod.
 * A bad value stops the service with one line naming the variable, the value and what was expected.
 * @module
 */
import { z } from "zod";
import type { AuthConfig } from "./auth.ts";
import { redact } from "./redact.ts";
import { DEFAULT_RETRY_DELAYS_MS } from "./topology.ts";

const DEFAULT_STOCK =
  "burger=500,fries=500,salad=300,pizza=300,wrap=300,soda=1000,coffee=1000,cookie=800";

/** How long an order may stay PENDING, unless `ORDER_DECISION_TIMEOUT` says otherwise. */
export const DEFAULT_ORDER_DECISION_TIMEOUT_MS = 120_000;

const port = z.string().regex(/^\d{1,5}$/, "digits only").transform(Number).pipe(
  z.number().max(65535),
);
const count = z.string().regex(/^\d{1,7}$/, "digits only").transform(Number).pipe(
  z.number().int().min(1),
);
const rate = z.string().regex(/^(0|1|0?\.\d+|1\.0*)$/, "a decimal number").transform(Number)
  .pipe(z.number().min(0).max(1));
const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

const stock = z.string().transform((text, ctx) => {
  const result: Record<string, number> = {};
  for (const pair of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const match = /^([^=\s]{1,64})=(\d{1,9})$/.exec(pair);
    if (!match) {
      ctx.addIssue({ code: "custom", message: `sku=qty pairs, comma-separated (at "${pair}")` });
      return z.NEVER;
    }
    if (match[1] in result) {
      ctx.addIssue({ code: "custom", message: `"${match[1]}" is given twice` });
      return z.NEVER;
    }
    result[match[1]] = Number(match[2]);
  }
  if (Object.keys(result).length === 0) {
    ctx.addIssue({ code: "custom", message: "at least one sku=qty pair" });
    return z.NEVER;
  }
  return result;
});

const MS_PER_UNIT: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** A duration such as `100ms`, `30s`, `5m`, `24h` or `7d`, in milliseconds; undefined if it is not. */
export function parseDuration(text: string): number | undefined {
  const match = /^\s*(\d{1,7})(ms|s|m|h|d)\s*$/.exec(text);
  return match ? Number(match[1]) * MS_PER_UNIT[match[2]] : undefined;
}

const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms === 0) {
    ctx.addIssue({ code: "custom", message: "a positive duration such as 30s, 5m, 24h or 7d" });
    return z.NEVER;
  }
  return ms;
});

const durations = z.string().transform((text, ctx) => {
  const delays = text.split(",").map(parseDuration);
  if (delays.some((ms) => ms === undefined)) {
    ctx.addIssue({ code: "custom", message: "durations such as 1s,5s,30s or 100ms" });
    return z.NEVER;
  }
  return delays as number[];
});

const amqpUrl = z.url({ protocol: /^amqps?$/, hostname: /./ });

/** One broker URL, or the comma-separated URLs of one cluster's nodes, all with the same vhost. */
const amqpNodes = z.string().transform((text, ctx) => {
  const urls = text.split(",").map((part) => part.trim());
  for (const url of urls) {
    const parsed = amqpUrl.safeParse(url);
    if (!parsed.success) {
      ctx.addIssue({ code: "custom", message: `"${url}" is not an amqp:// or amqps:// URL` });
      return z.NEVER;
    }
  }
  const vhosts = new Set(urls.map(vhostOf));
  if (vhosts.size > 1) {
    ctx.addIssue({
      code: "custom",
      message: `the nodes of one cluster share one vhost, not ${[...vhosts].join(" and ")}`,
    });
    return z.NEVER;
  }
  return urls;
});

/** The vhost a URL names: its path without the leading slash, "/" when empty. */
function vhostOf(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1)) || "/";
}

/** A PEM file's contents, read at start so that a wrong path stops the service at once. */
const pemFile = z.string().transform((path, ctx) => {
  try {
    const text = Deno.readTextFileSync(path);
    if (text.includes("-----BEGIN ")) return text;
    ctx.addIssue({ code: "custom", message: "it holds no PEM block" });
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
  }
  return z.NEVER;
});

/** A JWKS URL: https, or http to this machine, where nobody can swap the keys on the way. */
const jwksUrl = z.url({ protocol: /^https?$/, hostname: /./ }).refine(
  (url) => {
    const { protocol, hostname } = new URL(url);
    return protocol === "https:" || ["localhost", "127.0.0.1", "[::1]"].includes(hostname);
  },
  "http:// is only for localhost",
);

/**
 * A Standard Webhooks secret, `whsec_` and the key in base64 (24 to 64 bytes, as the spec asks):
 * its key bytes. Decoded here so that a bad secret stops the service at start, not at its first send.
 */
const webhookSecret = z.string().transform((text, ctx) => {
  const base64 = text.startsWith("whsec_") ? text.slice("whsec_".length) : undefined;
  let key: Uint8Array | undefined;
  try {
    if (base64 !== undefined && /^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
      key = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    }
  } catch {
    // Not base64: said below.
  }
  if (!key) {
    ctx.addIssue({ code: "custom", message: "not whsec_ followed by base64" });
    return z.NEVER;
  }
  if (key.length < 24 || key.length > 64) {
    ctx.addIssue({ code: "custom", message: `its key is ${key.length} bytes` });
    return z.NEVER;
  }
  return key;
});

const configSchema = z.object({
  AMQP_URL: amqpNodes.prefault("amqp://guest:guest@127.0.0.1:5672/"),
  RABBITMQ_MANAGEMENT_URL: z.url({ protocol: /^https?$/, hostname: /./ }).default(
    "http://guest:guest@127.0.0.1:15672",
  ),
  ORDER_PORT: port.prefault("8001"),
  INVENTORY_PORT: port.prefault("8002"),
  NOTIFICATION_PORT: port.prefault("8003"),
  DATA_DIR: z.string().min(1).default("./data"),
  DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/ }).optional(),
  INVENTORY_FAIL: bool.prefault("false"),
  INVENTORY_STOCK: stock.prefault(DEFAULT_STOCK),
  FAULT_TRANSIENT_RATE: rate.prefault("0"),
  RETRY_DELAYS: durations.prefault(DEFAULT_RETRY_DELAYS_MS.map((ms) => `${ms}ms`).join(",")),
  INBOX_RETENTION: duration.prefault("7d"),
  IDEMPOTENCY_KEY_RETENTION: duration.prefault("24h"),
  ORDER_DECISION_TIMEOUT: duration.prefault(`${DEFAULT_ORDER_DECISION_TIMEOUT_MS / 1000}s`),
  // A few seconds of the busiest load this system takes.
  HTTP_MAX_IN_FLIGHT: count.prefault("1000"),
  HTTP_BODY_TIMEOUT: duration.prefault("10s"),
  HTTP_HOST: z.union([z.ipv4(), z.ipv6(), z.hostname()]).optional(),
  MAX_UNITS_PER_STUDENT: count.optional(),
  LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  LOG_FORMAT: z.enum(["json", "pretty"]).optional(),
  // 32 bytes at least: RFC 7518 asks an HS256 key to be as long as the hash.
  AUTH_JWT_SECRET: z.string().min(32).optional(),
  AUTH_JWKS_URL: jwksUrl.optional(),
  AUTH_AUDIENCE: z.string().trim().min(1).optional(),
  AUTH_ISSUER: z.string().min(1).optional(),
  AMQP_CA_FILE: pemFile.optional(),
  AMQP_CERT_FILE: pemFile.optional(),
  AMQP_KEY_FILE: pemFile.optional(),
  NOTIFY_WEBHOOK_URL: z.url({ protocol: /^https?$/, hostname: /./ }).optional(),
  NOTIFY_WEBHOOK_SECRET: webhookSecret.optional(),
}).superRefine((c, ctx) => {
  // An unsigned webhook would let anyone who finds the receiver's URL tell students anything.
  if (c.NOTIFY_WEBHOOK_URL && !c.NOTIFY_WEBHOOK_SECRET) {
    ctx.addIssue({
      code: "custom",
      path: ["NOTIFY_WEBHOOK_SECRET"],
      message: "NOTIFY_WEBHOOK_URL is set, and every delivery is signed with it",
    });
  }
  if (c.NOTIFY_WEBHOOK_SECRET && !c.NOTIFY_WEBHOOK_URL) {
    ctx.addIssue({
      code: "custom",
      path: ["NOTIFY_WEBHOOK_SECRET"],
      message: "NOTIFY_WEBHOOK_URL is not set, so nothing is sent or signed",
    });
  }
  if (c.AUTH_JWT_SECRET && c.AUTH_JWKS_URL) {
    ctx.addIssue({
      code: "custom",
      path: ["AUTH_JWKS_URL"],
      message: "AUTH_JWT_SECRET is set too: set one of them",
    });
  }
  // An identity provider issues tokens to many applications: without the audience, an admin
  // token it issued to any of them would be an admin token here.
  if (c.AUTH_JWKS_URL && !c.AUTH_AUDIENCE) {
    ctx.addIssue({
      code: "custom",
      path: ["AUTH_AUDIENCE"],
      message: "AUTH_JWKS_URL is set, and a shared identity provider's tokens need their audience",
    });
  }
  if ((c.AUTH_AUDIENCE || c.AUTH_ISSUER) && !c.AUTH_JWT_SECRET && !c.AUTH_JWKS_URL) {
    ctx.addIssue({
      code: "custom",
      path: [c.AUTH_AUDIENCE ? "AUTH_AUDIENCE" : "AUTH_ISSUER"],
      message: "no AUTH_JWT_SECRET or AUTH_JWKS_URL is set, so no token is checked",
    });
  }
  if (Boolean(c.AMQP_CERT_FILE) !== Boolean(c.AMQP_KEY_FILE)) {
    ctx.addIssue({
      code: "custom",
      path: [c.AMQP_CERT_FILE ? "AMQP_KEY_FILE" : "AMQP_CERT_FILE"],
      message: "a client certificate needs both AMQP_CERT_FILE and AMQP_KEY_FILE",
    });
  }
  const plain = c.AMQP_URL.find((url) => url.startsWith("amqp://"));
  if ((c.AMQP_CA_FILE || c.AMQP_CERT_FILE) && plain) {
    ctx.addIssue({
      code: "custom",
      path: ["AMQP_URL"],
      message: "AMQP_CA_FILE or AMQP_CERT_FILE is set, so every node must be amqps://",
    });
  }
});

/** The parsed configuration of a service. */
export interface Config {
  /** The broker's URL, or one URL per node of a cluster: the service moves to another on a loss. */
  amqpUrls: string[];
  managementUrl: string;
  ports: { order: number; inventory: number; notification: number };
  dataDir: string;
  databaseUrl?: string;
  inventoryFail: boolean;
  initialStock: Record<string, number>;
  faultTransientRate: number;
  /** The delay before each retry of a transiently failed message, in milliseconds. */
  retryDelaysMs: number[];
  /** How long a consumer remembers a handled `event_id`, in milliseconds. */
  inboxRetentionMs: number;
  /** How long `POST /order` remembers an `Idempotency-Key`, in milliseconds. */
  idempotencyKeyRetentionMs: number;
  /** How long an order may stay PENDING before it becomes EXPIRED, in milliseconds. */
  orderDecisionTimeoutMs: number;
  /** Requests a service's own routes handle at once; more are answered 503. */
  httpMaxInFlight: number;
  /** How long a request may take to send its body before it is answered 408, in milliseconds. */
  httpBodyTimeoutMs: number;
  /** The address the HTTP server listens on: loopback unless set, or authentication is on. */
  httpHost: string;
  /** The most units one student's PENDING and CONFIRMED orders may hold together; unset: no cap. */
  maxUnitsPerStudent?: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** `json` outside a terminal, `pretty` in one, unless LOG_FORMAT says otherwise. */
  logFormat?: "json" | "pretty";
  /** How bearer tokens are checked; undefined: they are not, and anyone may do anything. */
  auth?: AuthConfig;
  /** PEM contents for `amqps://`: the CA to trust instead of the system's, a client certificate. */
  amqpTls: { ca?: string; cert?: string; key?: string };
  /**
   * Where notification POSTs each notification, and the key (the bytes of the `whsec_` secret) it
   * signs them with; undefined: notifications are only recorded.
   */
  notifyWebhook?: { url: string; key: Uint8Array };
}

/** Thrown by {@linkcode parseConfig}; its message is the one line to print. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Parses the environment into a {@linkcode Config}.
 *
 * @param env the variables, usually `Deno.env.toObject()`; empty strings count as unset
 * @param service the service's name, for the error message
 * @throws {ConfigError} naming the first bad variable, its value and what was expected
 */
export function parseConfig(env: Record<string, string | undefined>, service: string): Config {
  const present = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = configSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue.path[0]);
    throw new ConfigError(
      `Cannot start ${service} as ${name} must be ${describe(name)}: current value is ${
        shown(name, present[name])
      } (${redact(issue.message)})`,
    );
  }
  const c = parsed.data;
  return {
    amqpUrls: c.AMQP_URL,
    managementUrl: c.RABBITMQ_MANAGEMENT_URL,
    ports: { order: c.ORDER_PORT, inventory: c.INVENTORY_PORT, notification: c.NOTIFICATION_PORT },
    dataDir: c.DATA_DIR,
    databaseUrl: c.DATABASE_URL,
    inventoryFail: c.INVENTORY_FAIL,
    initialStock: c.INVENTORY_STOCK,
    faultTransientRate: c.FAULT_TRANSIENT_RATE,
    retryDelaysMs: c.RETRY_DELAYS,
    inboxRetentionMs: c.INBOX_RETENTION,
    idempotencyKeyRetentionMs: c.IDEMPOTENCY_KEY_RETENTION,
    orderDecisionTimeoutMs: c.ORDER_DECISION_TIMEOUT,
    httpMaxInFlight: c.HTTP_MAX_IN_FLIGHT,
    httpBodyTimeoutMs: c.HTTP_BODY_TIMEOUT,
    // An open service answers anyone who reaches it, so it stays on this machine unless told.
    httpHost: c.HTTP_HOST ?? (authConfig(c) ? "0.0.0.0" : "127.0.0.1"),
    maxUnitsPerStudent: c.MAX_UNITS_PER_STUDENT,
    logLevel: c.LOG_LEVEL,
    logFormat: c.LOG_FORMAT,
    auth: authConfig(c),
    amqpTls: { ca: c.AMQP_CA_FILE, cert: c.AMQP_CERT_FILE, key: c.AMQP_KEY_FILE },
    notifyWebhook: c.NOTIFY_WEBHOOK_URL && c.NOTIFY_WEBHOOK_SECRET
      ? { url: c.NOTIFY_WEBHOOK_URL, key: c.NOTIFY_WEBHOOK_SECRET }
      : undefined,
  };
}

function authConfig(c: z.infer<typeof configSchema>): AuthConfig | undefined {
  const claims = { audience: c.AUTH_AUDIENCE, issuer: c.AUTH_ISSUER };
  if (c.AUTH_JWT_SECRET) return { jwtSecret: c.AUTH_JWT_SECRET, ...claims };
  if (c.AUTH_JWKS_URL) return { jwksUrl: c.AUTH_JWKS_URL, ...claims };
  return undefined;
}

/** Variables whose value an error must not repeat. */
const SECRETS = new Set(["AUTH_JWT_SECRET", "NOTIFY_WEBHOOK_SECRET"]);

/** `value` as an error shows it: quoted, with any URL password hidden, a secret not at all. */
function shown(name: string, value: string | undefined): string {
  if (value === undefined) return "unset";
  if (SECRETS.has(name)) return `hidden (${value.length} characters)`;
  return redact(JSON.stringify(value));
}

const EXPECTED: Record<string, string> = {
  AMQP_URL: "an amqp:// or amqps:// URL, or a comma-separated list of them with one vhost",
  RABBITMQ_MANAGEMENT_URL: "an http:// or https:// URL",
  ORDER_PORT: "an integer 0-65535",
  INVENTORY_PORT: "an integer 0-65535",
  NOTIFICATION_PORT: "an integer 0-65535",
  DATA_DIR: "a directory path",
  DATABASE_URL: "a postgres:// URL",
  INVENTORY_FAIL: "true or false",
  INVENTORY_STOCK: "sku=qty pairs such as burger=500,fries=500",
  FAULT_TRANSIENT_RATE: "a number from 0 to 1",
  RETRY_DELAYS: "comma-separated durations such as 1s,5s,30s",
  INBOX_RETENTION: "a duration such as 30m, 24h or 7d",
  IDEMPOTENCY_KEY_RETENTION: "a duration such as 30m, 24h or 7d",
  ORDER_DECISION_TIMEOUT: "a duration such as 30s, 2m or 1h",
  HTTP_MAX_IN_FLIGHT: "a positive integer",
  HTTP_BODY_TIMEOUT: "a duration such as 500ms, 10s or 1m",
  HTTP_HOST: "an IP address or a host name to listen on, such as 127.0.0.1 or 0.0.0.0",
  MAX_UNITS_PER_STUDENT: "a positive integer",
  LOG_LEVEL: "one of debug, info, warn, error",
  LOG_FORMAT: "json or pretty",
  AUTH_JWT_SECRET: "a secret of at least 32 characters",
  AUTH_JWKS_URL: "the https:// URL of a JSON Web Key Set, given alone",
  AUTH_AUDIENCE: "the audience tokens are issued for: required with AUTH_JWKS_URL",
  AUTH_ISSUER: "the issuer of the tokens, with AUTH_JWT_SECRET or AUTH_JWKS_URL",
  AMQP_CA_FILE: "a readable PEM file",
  AMQP_CERT_FILE: "a readable PEM file, given with AMQP_KEY_FILE",
  AMQP_KEY_FILE: "a readable PEM file, given with AMQP_CERT_FILE",
  NOTIFY_WEBHOOK_URL: "an http:// or https:// URL to POST notifications to",
  NOTIFY_WEBHOOK_SECRET:
    "whsec_ followed by a base64 key of 24 to 64 bytes, given with NOTIFY_WEBHOOK_URL",
};

function describe(name: string): string {
  return EXPECTED[name] ?? "valid";
}

/** Parses `Deno.env` for `service`; on a bad value prints the one-line reason and exits 1. */
export function loadConfig(service: string): Config {
  try {
    return parseConfig(Deno.env.toObject(), service);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
}
