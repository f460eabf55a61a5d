import assert from "node:assert/strict";
import { redact } from "./redact.ts";

/**
 * Asserts that redact() gives back `redacted` for the text that has `secrets` in place of its
 * `***`s, the first secret in place of the first.
 */
function assertHides(redacted: string, ...secrets: string[]): void {
  const parts = redacted.split("***");
  assert.equal(secrets.length, parts.length - 1, `one secret for each *** of ${redacted}`);
  const text = parts.reduce((before, part, index) => before + secrets[index - 1] + part);
  assert.equal(redact(text), redacted, text);
}

/** Asserts that redact() gives back each of `texts` as it is. */
function assertLeavesAlone(...texts: string[]): void {
  for (const text of texts) assert.equal(redact(text), text, text);
}

Deno.test("redact() replaces the password of a URL and keeps its user", () => {
  assertHides("amqps://order:***@rabbit.example:5671/campus", "s3cret");
  assertHides("postgres://campus:***@db:5432/food?sslmode=require", "pw");
});

Deno.test("redact() hides every URL's password in a message, also one holding an @", () => {
  assertHides(
    `Invalid URL: "amqp://a:***@h1/v,amqp://b:***@h2/v" and http://c:***@e`,
    "x@y",
    "p%40ss",
    "d",
  );
});

Deno.test("redact() leaves text without credentials as it is", () => {
  assertLeavesAlone(
    "amqp://rabbit:5672/campus",
    "mailto:someone@example.com",
    "node=127.0.0.1:5672 user@host",
    "",
  );
});

Deno.test("redact() hides a password holding a quote, an angle bracket, a space or a slash", () => {
  for (
    const password of [`pa"ss`, `pa'ss`, "pa<ss", "pa>ss", "pa ss", "pa/ss", `"'<> /@:x`]
  ) {
    assertHides("cannot connect to amqp://order:***@rabbit.example:5672/campus: refused", password);
  }
});

Deno.test("redact() hides such a password also where a JSON string quotes the URL", () => {
  const quoted = JSON.stringify({ url: `amqp://order:p"a s/s@rabbit/campus`, user_id: "u1" });
  const hidden = redact(quoted);
  assert.equal(hidden, `{"url":"amqp://order:***@rabbit/campus","user_id":"u1"}`);
  assert.deepEqual(JSON.parse(hidden), { url: "amqp://order:***@rabbit/campus", user_id: "u1" });
});

Deno.test("redact() hides the value of query parameters named like secrets", () => {
  const names = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "apiKey",
    "key",
    "auth",
    "signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "sig",
    "credential",
    "credentials",
  ];
  for (const name of names) {
    assertHides(`POST https://hook.example/in?order_id=o1&${name}=***&x=1 failed`, "s3cr%2Fet");
    assertHides(`http://h/p?${name}=***`, "s3cret");
  }
  assertHides("https://app.example/cb#access_token=***", "abc");
  assertHides("postgres://u:***@db/food?sslmode=require&password=***", "pw", "pw2");
});

Deno.test("redact() leaves ports, paths and harmless query parameters as they are", () => {
  assertLeavesAlone(
    "http://127.0.0.1:8003/notifications?user_id=alice@uni.example",
    "http://127.0.0.1:8001/orders?order_id=01J&sku=burger&qty=2",
    "amqp://rabbit:5672/campus, then mailto:someone@example.com",
    "GET /metrics?name=x done",
  );
});
