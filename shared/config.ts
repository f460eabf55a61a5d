/**
 * Configuration from the environment, parsed once at start with zod. Every variable is declared
 * once, with how it is read and what a bad value should have been ({@linkcode variable}): those all
 * services read here ({@linkcode COMMON_VARIABLES}), each service's own in its `config.ts`. A bad
 * value stops the service with one line naming the variable, the value and what was expected.
 * @module
 */
import { z } from "zod";
import type { AuthConfig } from "./auth.ts";
import { redact } from "./redact.ts";
import { DEFAULT_RETRY_DELAYS_MS } from "./topology.ts";

/** One environment variable: its name, how its text is read, and what a bad value should be. */
export interface Variable<T> {
  name: string;
  /** Reads the text; undefined when unset (give a default with `.prefault(text)`). */
  schema: z.ZodType<T, string | undefined>;
  /** What a bad value is told it should be: "a duration such as 30s, 2m or 1h". */
  expected: string;
  /** Its value is never repeated in an error. */
  secret: boolean;
}

/** Declares the variable `name`: read by `schema`, a bad value told it must be `expected`. */
export function variable<T>(
  name: string,
  schema: z.ZodType<T, string | undefined>,
  options: { expected: string; secret?: boolean },
): Variable<T> {
  return { name, schema, expected: options.expected, secret: options.secret ?? false };
}

/** Variables by the name of the value each gives. */
export type Variables = Record<string, Variable<unknown>>;

/** The values of `V`, by the same names. */
export type ValuesOf<V extends Variables> = {
  [K in keyof V]: V[K] extends Variable<infer T> ? T : never;
};

/**
 * A rule between variables, checked once each is valid: undefined when kept, else the value to
 * blame and why.
 */
export type Rule<V extends Variables> = (
  values: ValuesOf<V>,
) => { blame: keyof V & string; message: string } | undefined;

/** What a service reads besides {@linkcode COMMON_VARIABLES}. */
export interface ServiceVariables<V extends Variables> {
  variables: V;
  rules?: Rule<V>[];
}

/** Thrown by {@linkcode parseConfig}; its message is the one line to print. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** An integer 0-65535. */
export const port = z.string().regex(/^\d{1,5}$/, "digits only").transform(Number).pipe(
  z.number().max(65535),
);
/** A positive integer. */
export const count = z.string().regex(/^\d{1,7}$/, "digits only").transform(Number).pipe(
  z.number().int().min(1),
);
/** A number from 0 to 1. */
export const rate = z.string().regex(/^(0|1|0?\.\d+|1\.0*)$/, "a decimal number").transform(Number)
  .pipe(z.number().min(0).max(1));
/** true, false, 1 or 0. */
export const bool = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

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

/** A positive duration, in milliseconds. */
export const duration = z.string().transform((text, ctx) => {
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

const http = z.url({ protocol: /^https?$/, hostname: /./ });

/** What every service, and every tool of the harness, reads. */
const COMMON_VARIABLES = {
  amqpUrls: variable("AMQP_URL", amqpNodes.prefault("amqp://guest:guest@127.0.0.1:5672/"), {
    expected: "an amqp:// or amqps:// URL, or a comma-separated list of them with one vhost",
  }),
  managementUrl: variable(
    "RABBITMQ_MANAGEMENT_URL",
    http.default("http://guest:guest@127.0.0.1:15672"),
    { expected: "an http:// or https:// URL" },
  ),
  orderPort: variable("ORDER_PORT", port.prefault("8001"), { expected: "an integer 0-65535" }),
  inventoryPort: variable("INVENTORY_PORT", port.prefault("8002"), {
    expected: "an integer 0-65535",
  }),
  notificationPort: variable("NOTIFICATION_PORT", port.prefault("8003"), {
    expected: "an integer 0-65535",
  }),
  dataDir: variable("DATA_DIR", z.string().min(1).default("./data"), {
    expected: "a directory path",
  }),
  databaseUrl: variable("DATABASE_URL", z.url({ protocol: /^postgres(ql)?$/ }).optional(), {
    expected: "a postgres:// URL",
  }),
  faultTransientRate: variable("FAULT_TRANSIENT_RATE", rate.prefault("0"), {
    expected: "a number from 0 to 1",
  }),
  retryDelaysMs: variable(
    "RETRY_DELAYS",
    durations.prefault(DEFAULT_RETRY_DELAYS_MS.map((ms) => `${ms}ms`).join(",")),
    { expected: "comma-separated durations such as 1s,5s,30s" },
  ),
  inboxRetentionMs: variable("INBOX_RETENTION", duration.prefault("7d"), {
    expected: "a duration such as 30m, 24h or 7d",
  }),
  // A few seconds of the busiest load this system takes.
  httpMaxInFlight: variable("HTTP_MAX_IN_FLIGHT", count.prefault("1000"), {
    expected: "a positive integer",
  }),
  httpBodyTimeoutMs: variable("HTTP_BODY_TIMEOUT", duration.prefault("10s"), {
    expected: "a duration such as 500ms, 10s or 1m",
  }),
  httpHost: variable("HTTP_HOST", z.union([z.ipv4(), z.ipv6(), z.hostname()]).optional(), {
    expected: "an IP address or a host name to listen on, such as 127.0.0.1 or 0.0.0.0",
  }),
  logLevel: variable("LOG_LEVEL", z.enum(["debug", "info", "warn", "error"]).default("info"), {
    expected: "one of debug, info, warn, error",
  }),
  logFormat: variable("LOG_FORMAT", z.enum(["json", "pretty"]).optional(), {
    expected: "json or pretty",
  }),
  // 32 bytes at least: RFC 7518 asks an HS256 key to be as long as the hash.
  authJwtSecret: variable("AUTH_JWT_SECRET", z.string().min(32).optional(), {
    expected: "a secret of at least 32 characters",
    secret: true,
  }),
  authJwksUrl: variable("AUTH_JWKS_URL", jwksUrl.optional(), {
    expected: "the https:// URL of a JSON Web Key Set, given alone",
  }),
  authAudience: variable("AUTH_AUDIENCE", z.string().trim().min(1).optional(), {
    expected: "the audience tokens are issued for: required with AUTH_JWKS_URL",
  }),
  authIssuer: variable("AUTH_ISSUER", z.string().min(1).optional(), {
    expected: "the issuer of the tokens, with AUTH_JWT_SECRET or AUTH_JWKS_URL",
  }),
  amqpCaFile: variable("AMQP_CA_FILE", pemFile.optional(), { expected: "a readable PEM file" }),
  amqpCertFile: variable("AMQP_CERT_FILE", pemFile.optional(), {
    expected: "a readable PEM file, given with AMQP_KEY_FILE",
  }),
  amqpKeyFile: variable("AMQP_KEY_FILE", pemFile.optional(), {
    expected: "a readable PEM file, given with AMQP_CERT_FILE",
  }),
};

type Common = ValuesOf<typeof COMMON_VARIABLES>;

const COMMON_RULES: Rule<typeof COMMON_VARIABLES>[] = [
  (c) =>
    c.authJwtSecret && c.authJwksUrl
      ? { blame: "authJwksUrl", message: "AUTH_JWT_SECRET is set too: set one of them" }
      : undefined,
  // An identity provider issues tokens to many applications: without the audience, an admin
  // token it issued to any of them would be an admin token here.
  (c) =>
    c.authJwksUrl && !c.authAudience
      ? {
        blame: "authAudience",
        message:
          "AUTH_JWKS_URL is set, and a shared identity provider's tokens need their audience",
      }
      : undefined,
  (c) =>
    (c.authAudience || c.authIssuer) && !c.authJwtSecret && !c.authJwksUrl
      ? {
        blame: c.authAudience ? "authAudience" : "authIssuer",
        message: "no AUTH_JWT_SECRET or AUTH_JWKS_URL is set, so no token is checked",
      }
      : undefined,
  (c) =>
    Boolean(c.amqpCertFile) !== Boolean(c.amqpKeyFile)
      ? {
        blame: c.amqpCertFile ? "amqpKeyFile" : "amqpCertFile",
        message: "a client certificate needs both AMQP_CERT_FILE and AMQP_KEY_FILE",
      }
      : undefined,
  (c) =>
    (c.amqpCaFile || c.amqpCertFile) && c.amqpUrls.some((url) => url.startsWith("amqp://"))
      ? {
        blame: "amqpUrls",
        message: "AMQP_CA_FILE or AMQP_CERT_FILE is set, so every node must be amqps://",
      }
      : undefined,
];

/** The configuration every service has, as its parts use it. */
function commonConfig(c: Common) {
  const auth = authConfig(c);
  return {
    /** The broker's URL, or one per node of a cluster: the service moves to another on a loss. */
    amqpUrls: c.amqpUrls,
    managementUrl: c.managementUrl,
    ports: { order: c.orderPort, inventory: c.inventoryPort, notification: c.notificationPort },
    dataDir: c.dataDir,
    databaseUrl: c.databaseUrl,
    faultTransientRate: c.faultTransientRate,
    retryDelaysMs: c.retryDelaysMs,
    inboxRetentionMs: c.inboxRetentionMs,
    httpMaxInFlight: c.httpMaxInFlight,
    httpBodyTimeoutMs: c.httpBodyTimeoutMs,
    // An open service answers anyone who reaches it, so it stays on this machine unless told.
    httpHost: c.httpHost ?? (auth ? "0.0.0.0" : "127.0.0.1"),
    logLevel: c.logLevel,
    logFormat: c.logFormat,
    /** How bearer tokens are checked; undefined: they are not, and anyone may do anything. */
    auth,
    /** PEM contents for `amqps://`: the CA to trust instead of the system's, a client certificate. */
    amqpTls: { ca: c.amqpCaFile, cert: c.amqpCertFile, key: c.amqpKeyFile },
  };
}

/** The configuration every service and tool has. */
export type Config = ReturnType<typeof commonConfig>;

function authConfig(c: Common): AuthConfig | undefined {
  const claims = { audience: c.authAudience, issuer: c.authIssuer };
  if (c.authJwtSecret) return { jwtSecret: c.authJwtSecret, ...claims };
  if (c.authJwksUrl) return { jwksUrl: c.authJwksUrl, ...claims };
  return undefined;
}

/**
 * Parses the environment into the common {@linkcode Config} and, with `own`, a service's own
 * values beside it.
 *
 * @param env the variables, usually `Deno.env.toObject()`; empty strings count as unset
 * @param who the service or tool, for the error message
 * @throws {ConfigError} naming the first bad variable, its value and what was expected
 */
export function parseConfig<V extends Variables = Record<never, never>>(
  env: Record<string, string | undefined>,
  who: string,
  own?: ServiceVariables<V>,
): Config & ValuesOf<V> {
  const common = readVariables(env, who, { variables: COMMON_VARIABLES, rules: COMMON_RULES });
  const values = own ? readVariables(env, who, own) : ({} as ValuesOf<V>);
  return { ...commonConfig(common), ...values };
}

/** Reads `variables` from `env` and checks their `rules`. */
function readVariables<V extends Variables>(
  env: Record<string, string | undefined>,
  who: string,
  { variables, rules = [] }: ServiceVariables<V>,
): ValuesOf<V> {
  const values: Record<string, unknown> = {};
  for (const [key, each] of Object.entries(variables)) {
    const text = env[each.name] === "" ? undefined : env[each.name];
    const parsed = each.schema.safeParse(text);
    if (!parsed.success) throw configError(who, each, text, parsed.error.issues[0].message);
    values[key] = parsed.data;
  }
  for (const rule of rules) {
    const broken = rule(values as ValuesOf<V>);
    if (!broken) continue;
    const blamed = variables[broken.blame];
    const text = env[blamed.name] === "" ? undefined : env[blamed.name];
    throw configError(who, blamed, text, broken.message);
  }
  return values as ValuesOf<V>;
}

function configError(
  who: string,
  variable: Variable<unknown>,
  text: string | undefined,
  why: string,
): ConfigError {
  const shown = text === undefined
    ? "unset"
    : variable.secret
    ? `hidden (${text.length} characters)`
    : redact(JSON.stringify(text));
  return new ConfigError(
    `Cannot start ${who} as ${variable.name} must be ${variable.expected}: current value is ${shown} (${
      redact(why)
    })`,
  );
}

/**
 * Parses `Deno.env` for `who`, with its own variables if it has any; on a bad value prints the
 * one-line reason and exits 1.
 */
export function loadConfig<V extends Variables = Record<never, never>>(
  who: string,
  own?: ServiceVariables<V>,
): Config & ValuesOf<V> {
  try {
    return parseConfig(Deno.env.toObject(), who, own);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    Deno.exit(1);
  }
}
