import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "./config.ts";
import { configTests } from "./testing/config_errors.ts";

Deno.test("parseConfig() uses the defaults when nothing is set", () => {
  const config = parseConfig({}, "order");
  assert.deepEqual(config.ports, { order: 8001, inventory: 8002, notification: 8003 });
  assert.equal(config.dataDir, "./data");
  assert.deepEqual(config.amqpUrls, ["amqp://guest:guest@127.0.0.1:5672/"]);
  assert.equal(config.managementUrl, "http://guest:guest@127.0.0.1:15672");
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.faultTransientRate, 0);
  assert.equal(config.logLevel, "info");
});

Deno.test("parseConfig() applies overrides", () => {
  const config = parseConfig({
    AMQP_URL: "amqps://user:pw@broker.example:5671/campus",
    RABBITMQ_MANAGEMENT_URL: "https://user:pw@broker.example:15671",
    ORDER_PORT: "0",
    INVENTORY_PORT: "9002",
    NOTIFICATION_PORT: "65535",
    DATA_DIR: "/tmp/food",
    DATABASE_URL: "postgres://db.example/food",
    FAULT_TRANSIENT_RATE: "0.25",
    LOG_LEVEL: "debug",
    LOG_FORMAT: "json",
  }, "inventory");
  assert.deepEqual(config.amqpUrls, ["amqps://user:pw@broker.example:5671/campus"]);
  assert.equal(config.managementUrl, "https://user:pw@broker.example:15671");
  assert.deepEqual(config.ports, { order: 0, inventory: 9002, notification: 65535 });
  assert.equal(config.dataDir, "/tmp/food");
  assert.equal(config.databaseUrl, "postgres://db.example/food");
  assert.equal(config.faultTransientRate, 0.25);
  assert.equal(config.logLevel, "debug");
  assert.equal(config.logFormat, "json");
});

Deno.test("parseConfig() treats empty strings as unset", () => {
  const config = parseConfig({
    AMQP_URL: "",
    ORDER_PORT: "",
    DATA_DIR: "",
    DATABASE_URL: "",
    FAULT_TRANSIENT_RATE: "",
    LOG_LEVEL: "",
  }, "order");
  assert.deepEqual(config.amqpUrls, ["amqp://guest:guest@127.0.0.1:5672/"]);
  assert.equal(config.ports.order, 8001);
  assert.equal(config.dataDir, "./data");
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.faultTransientRate, 0);
  assert.equal(config.logLevel, "info");
});

Deno.test("parseConfig() ignores variables it does not know", () => {
  const config = parseConfig({ PATH: "/usr/bin", HOME: "/root" }, "order");
  assert.equal(config.ports.order, 8001);
});

const { assertConfigError } = configTests("order");

Deno.test("parseConfig() rejects a port that is not a number", () => {
  assertConfigError({ ORDER_PORT: "abc" }, "ORDER_PORT", "abc");
});

Deno.test("parseConfig() rejects a port above 65535", () => {
  assertConfigError({ ORDER_PORT: "70000" }, "ORDER_PORT", "70000");
});

Deno.test("parseConfig() rejects a negative or fractional port", () => {
  assertConfigError({ INVENTORY_PORT: "-1" }, "INVENTORY_PORT", "-1");
  assertConfigError({ NOTIFICATION_PORT: "80.5" }, "NOTIFICATION_PORT", "80.5");
});

Deno.test("parseConfig() rejects a FAULT_TRANSIENT_RATE above 1", () => {
  assertConfigError({ FAULT_TRANSIENT_RATE: "2" }, "FAULT_TRANSIENT_RATE", "2");
});

Deno.test("parseConfig() rejects an AMQP_URL that is not amqp:// or amqps://", () => {
  assertConfigError({ AMQP_URL: "http://x" }, "AMQP_URL", "http://x");
});

Deno.test("parseConfig() takes an AMQP_URL list of a cluster's nodes, in order", () => {
  const config = parseConfig({
    AMQP_URL:
      "amqp://u:p@node-1:5672/campus, amqp://u:p@node-2:5672/campus,amqps://u:p@node-3/campus",
  }, "order");
  assert.deepEqual(config.amqpUrls, [
    "amqp://u:p@node-1:5672/campus",
    "amqp://u:p@node-2:5672/campus",
    "amqps://u:p@node-3/campus",
  ]);
});

Deno.test("parseConfig() rejects an AMQP_URL list whose nodes name different vhosts", () => {
  assert.throws(
    () => parseConfig({ AMQP_URL: "amqp://node-1/a,amqp://node-2/b" }, "order"),
    { name: "ConfigError", message: /AMQP_URL must be .*one vhost.*not a and b/ },
  );
});

Deno.test("parseConfig() rejects an AMQP_URL list with an empty or non-amqp entry", () => {
  assertConfigError({ AMQP_URL: "amqp://node-1/,," }, "AMQP_URL", "amqp://node-1/,,");
  assertConfigError(
    { AMQP_URL: "amqp://node-1/,http://node-2/" },
    "AMQP_URL",
    "amqp://node-1/,http://node-2/",
  );
});

Deno.test("parseConfig() reads retention windows in ms, s, m, h and d", () => {
  const defaults = parseConfig({}, "order");
  assert.equal(defaults.inboxRetentionMs, 7 * 86_400_000);
  assert.equal(parseConfig({ INBOX_RETENTION: "90m" }, "order").inboxRetentionMs, 90 * 60_000);
  assert.deepEqual(parseConfig({ RETRY_DELAYS: "500ms,1s,2m" }, "order").retryDelaysMs, [
    500,
    1000,
    120_000,
  ]);
});

Deno.test("parseConfig() rejects a retention window of zero or without a unit", () => {
  assertConfigError({ INBOX_RETENTION: "0d" }, "INBOX_RETENTION", "0d");
});

Deno.test("parseConfig() reads HTTP_MAX_IN_FLIGHT, 1000 by default", () => {
  assert.equal(parseConfig({}, "order").httpMaxInFlight, 1000);
  assert.equal(parseConfig({ HTTP_MAX_IN_FLIGHT: "50" }, "order").httpMaxInFlight, 50);
  assertConfigError({ HTTP_MAX_IN_FLIGHT: "0" }, "HTTP_MAX_IN_FLIGHT", "0");
  assertConfigError({ HTTP_MAX_IN_FLIGHT: "lots" }, "HTTP_MAX_IN_FLIGHT", "lots");
});

Deno.test("parseConfig() reads HTTP_BODY_TIMEOUT as a duration, 10 s by default", () => {
  assert.equal(parseConfig({}, "order").httpBodyTimeoutMs, 10_000);
  assert.equal(parseConfig({ HTTP_BODY_TIMEOUT: "500ms" }, "order").httpBodyTimeoutMs, 500);
  assert.equal(parseConfig({ HTTP_BODY_TIMEOUT: "1m" }, "order").httpBodyTimeoutMs, 60_000);
  assertConfigError({ HTTP_BODY_TIMEOUT: "0s" }, "HTTP_BODY_TIMEOUT", "0s");
  assertConfigError({ HTTP_BODY_TIMEOUT: "10" }, "HTTP_BODY_TIMEOUT", "10");
});

Deno.test("parseConfig() listens on loopback by default, on every interface once authentication is on", () => {
  assert.equal(parseConfig({}, "order").httpHost, "127.0.0.1");
  const secret = "x".repeat(32);
  assert.equal(parseConfig({ AUTH_JWT_SECRET: secret }, "order").httpHost, "0.0.0.0");
  const jwks = { AUTH_JWKS_URL: "https://idp.example/jwks.json", AUTH_AUDIENCE: "campus-food" };
  assert.equal(parseConfig(jwks, "order").httpHost, "0.0.0.0");
  assert.equal(parseConfig({ HTTP_HOST: "0.0.0.0" }, "order").httpHost, "0.0.0.0");
  assert.equal(parseConfig({ HTTP_HOST: "::1" }, "order").httpHost, "::1");
  assert.equal(
    parseConfig({ HTTP_HOST: "127.0.0.1", AUTH_JWT_SECRET: secret }, "order").httpHost,
    "127.0.0.1",
  );
  assert.equal(parseConfig({ HTTP_HOST: "order.internal" }, "order").httpHost, "order.internal");
  assertConfigError({ HTTP_HOST: "http://0.0.0.0" }, "HTTP_HOST", "http://0.0.0.0");
  assertConfigError({ HTTP_HOST: "0.0.0.0:8001" }, "HTTP_HOST", "0.0.0.0:8001");
});

Deno.test("parseConfig() rejects an unknown LOG_LEVEL", () => {
  assertConfigError({ LOG_LEVEL: "verbose" }, "LOG_LEVEL", "verbose");
});

Deno.test("parseConfig() rejects a DATABASE_URL that is not postgres://", () => {
  assertConfigError({ DATABASE_URL: "mysql://db/food" }, "DATABASE_URL", "mysql://db/food");
});

Deno.test("parseConfig() names the expectation in the error", () => {
  assert.throws(
    () => parseConfig({ ORDER_PORT: "abc" }, "order"),
    {
      name: "ConfigError",
      message: /ORDER_PORT must be an integer 0-65535: current value is "abc"/,
    },
  );
});

for (
  const [name, value] of [
    ["ORDER_PORT", " "],
    ["ORDER_PORT", "0x1F"],
    ["ORDER_PORT", "1e3"],
    ["FAULT_TRANSIENT_RATE", " "],
    ["FAULT_TRANSIENT_RATE", "1e-1"],
    ["AMQP_URL", "amqp:foo"],
  ]
) {
  Deno.test(`parseConfig() rejects ${name}=${JSON.stringify(value)}`, () => {
    assert.throws(
      () => parseConfig({ [name]: value }, "inventory"),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes(name) &&
        error.message.includes(JSON.stringify(value)),
    );
  });
}

const SECRET = "0123456789abcdef0123456789abcdef";

Deno.test("parseConfig() leaves authentication off unless a secret or a JWKS URL is set", () => {
  assert.equal(parseConfig({}, "order").auth, undefined);
  assert.deepEqual(parseConfig({ AUTH_JWT_SECRET: SECRET }, "order").auth, {
    jwtSecret: SECRET,
    audience: undefined,
    issuer: undefined,
  });
  assert.deepEqual(
    parseConfig({
      AUTH_JWKS_URL: "https://id.example/.well-known/jwks.json",
      AUTH_AUDIENCE: "campus-food",
      AUTH_ISSUER: "https://id.example",
    }, "order").auth,
    {
      jwksUrl: "https://id.example/.well-known/jwks.json",
      audience: "campus-food",
      issuer: "https://id.example",
    },
  );
});

Deno.test("parseConfig() rejects a short AUTH_JWT_SECRET without showing it", () => {
  assert.throws(() => parseConfig({ AUTH_JWT_SECRET: "hunter2" }, "order"), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.match(error.message, /AUTH_JWT_SECRET must be a secret of at least 32 characters/);
    assert.match(error.message, /current value is hidden \(7 characters\)/);
    assert.ok(!error.message.includes("hunter2"), error.message);
    return true;
  });
});

Deno.test("parseConfig() rejects a JWKS URL over plain http to another host, and both kinds of key", () => {
  assertConfigError(
    { AUTH_JWKS_URL: "http://id.example/jwks.json" },
    "AUTH_JWKS_URL",
    "http://id.example/jwks.json",
  );
  assert.ok(
    parseConfig({ AUTH_JWKS_URL: "http://127.0.0.1:9/jwks", AUTH_AUDIENCE: "campus-food" }, "order")
      .auth,
  );
  assertConfigError(
    { AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: "https://id.example/jwks" },
    "AUTH_JWKS_URL",
    "https://id.example/jwks",
  );
  assertConfigError({ AUTH_AUDIENCE: "campus-food" }, "AUTH_AUDIENCE", "campus-food");
});

Deno.test("parseConfig() hides the password of a bad URL in its error", () => {
  assert.throws(
    () => parseConfig({ AMQP_URL: "amqp://order:s3cret@node-1/,http://order:s3cret@x/" }, "order"),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /amqp:\/\/order:\*\*\*@node-1/);
      assert.ok(!error.message.includes("s3cret"), error.message);
      return true;
    },
  );
});

Deno.test("parseConfig() reads the PEM files of AMQP_CA_FILE, AMQP_CERT_FILE and AMQP_KEY_FILE", async () => {
  const dir = await Deno.makeTempDir({ prefix: "config_test_" });
  try {
    const pem = (name: string) => `-----BEGIN ${name}-----\nAAAA\n-----END ${name}-----\n`;
    const files = { ca: `${dir}/ca.pem`, cert: `${dir}/cert.pem`, key: `${dir}/key.pem` };
    await Deno.writeTextFile(files.ca, pem("CERTIFICATE"));
    await Deno.writeTextFile(files.cert, pem("CERTIFICATE"));
    await Deno.writeTextFile(files.key, pem("PRIVATE KEY"));
    const tls = { AMQP_URL: "amqps://order:pw@rabbit.example/campus" };
    assert.deepEqual(Object.values(parseConfig({}, "order").amqpTls), [
      undefined,
      undefined,
      undefined,
    ]);
    const config = parseConfig({
      ...tls,
      AMQP_CA_FILE: files.ca,
      AMQP_CERT_FILE: files.cert,
      AMQP_KEY_FILE: files.key,
    }, "order");
    assert.deepEqual(config.amqpTls, {
      ca: pem("CERTIFICATE"),
      cert: pem("CERTIFICATE"),
      key: pem("PRIVATE KEY"),
    });
    assertConfigError(
      { ...tls, AMQP_CA_FILE: `${dir}/missing.pem` },
      "AMQP_CA_FILE",
      `${dir}/missing.pem`,
    );
    await Deno.writeTextFile(`${dir}/empty.pem`, "");
    assertConfigError(
      { ...tls, AMQP_CA_FILE: `${dir}/empty.pem` },
      "AMQP_CA_FILE",
      `${dir}/empty.pem`,
    );
    assert.throws(() => parseConfig({ ...tls, AMQP_CERT_FILE: files.cert }, "order"), {
      name: "ConfigError",
      message: /as AMQP_KEY_FILE must be .*: current value is unset \(a client certificate needs/,
    });
    assertConfigError(
      { AMQP_URL: "amqp://rabbit.example/campus", AMQP_CA_FILE: files.ca },
      "AMQP_URL",
      "amqp://rabbit.example/campus",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseConfig() requires AUTH_AUDIENCE with AUTH_JWKS_URL, in one line naming it", () => {
  const jwks = "https://id.example/.well-known/jwks.json";
  for (const audience of [undefined, "", "  "]) {
    assert.throws(
      () => parseConfig({ AUTH_JWKS_URL: jwks, AUTH_AUDIENCE: audience }, "order"),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
        assert.ok(!error.message.includes("\n"), "the message is one line");
        assert.match(
          error.message,
          /^Cannot start order as AUTH_AUDIENCE must be the audience tokens are issued for: required with AUTH_JWKS_URL: current value is /,
        );
        return true;
      },
      `AUTH_AUDIENCE=${JSON.stringify(audience)}`,
    );
  }
  const auth = parseConfig({ AUTH_JWKS_URL: jwks, AUTH_AUDIENCE: "campus-food" }, "order").auth;
  assert.deepEqual(auth, { jwksUrl: jwks, audience: "campus-food", issuer: undefined });
  // A shared secret is this system's own: no other application holds it, so no audience is needed.
  assert.equal(parseConfig({ AUTH_JWT_SECRET: SECRET }, "order").auth?.audience, undefined);
});
