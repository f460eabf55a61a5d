import assert from "node:assert/strict";
import { ConfigError } from "../shared/config.ts";
import { configTests } from "../shared/testing/config_errors.ts";
import { NOTIFICATION_RULES, NOTIFICATION_VARIABLES, webhookOf } from "./config.ts";

const { parse, assertConfigError } = configTests("notification", {
  variables: NOTIFICATION_VARIABLES,
  rules: NOTIFICATION_RULES,
});

const WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

Deno.test("parseConfig() reads NOTIFY_WEBHOOK_URL with its secret's key; unset, no webhook", () => {
  assert.equal(webhookOf(parse({})), undefined);
  const config = parse({
    NOTIFY_WEBHOOK_URL: "https://campus-app.example/hooks/food",
    NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET,
  });
  assert.equal(webhookOf(config)?.url, "https://campus-app.example/hooks/food");
  assert.deepEqual(
    webhookOf(config)?.key,
    Uint8Array.from(atob("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), (c) => c.charCodeAt(0)),
  );
});

Deno.test("parseConfig() stops at a missing or bad NOTIFY_WEBHOOK_SECRET in one line, without showing it", () => {
  const url = { NOTIFY_WEBHOOK_URL: "http://127.0.0.1:9000/hook" };
  for (
    const secret of [
      undefined,
      "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
      "whsec_not*base64",
      `whsec_${btoa("too short")}`,
    ]
  ) {
    assert.throws(
      () => parse({ ...url, NOTIFY_WEBHOOK_SECRET: secret }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
        assert.ok(!error.message.includes("\n"), "the message is one line");
        assert.match(
          error.message,
          /^Cannot start notification as NOTIFY_WEBHOOK_SECRET must be whsec_ followed by a base64 key of 24 to 64 bytes, given with NOTIFY_WEBHOOK_URL: current value is /,
        );
        if (secret) assert.ok(!error.message.includes(secret), error.message);
        return true;
      },
      `NOTIFY_WEBHOOK_SECRET=${secret}`,
    );
  }
  assert.throws(
    () => parse({ NOTIFY_WEBHOOK_SECRET: WEBHOOK_SECRET }),
    {
      name: "ConfigError",
      message: /NOTIFY_WEBHOOK_SECRET must be .*NOTIFY_WEBHOOK_URL is not set/,
    },
  );
  assertConfigError({ NOTIFY_WEBHOOK_URL: "ftp://x/hook" }, "NOTIFY_WEBHOOK_URL", "ftp://x/hook");
});
