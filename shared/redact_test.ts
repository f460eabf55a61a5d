import assert from "node:assert/strict";
import { redact } from "./redact.ts";

Deno.test("redact() replaces the password of a URL and keeps its user", () => {
  assert.equal(
    redact("amqps://order:s3cret@rabbit.example:5671/campus"),
    "amqps://order:***@rabbit.example:5671/campus",
  );
  assert.equal(
    redact("postgres://campus:pw@db:5432/food?sslmode=require"),
    "postgres://campus:***@db:5432/food?sslmode=require",
  );
});

Deno.test("redact() hides every URL's password in a message, also one holding an @", () => {
  assert.equal(
    redact(`Invalid URL: "amqp://a:x@y@h1/v,amqp://b:p%40ss@h2/v" and http://c:d@e`),
    `Invalid URL: "amqp://a:***@h1/v,amqp://b:***@h2/v" and http://c:***@e`,
  );
});

Deno.test("redact() leaves text without credentials as it is", () => {
  for (
    const text of [
      "amqp://rabbit:5672/campus",
      "mailto:someone@example.com",
      "node=127.0.0.1:5672 user@host",
      "",
    ]
  ) {
    assert.equal(redact(text), text);
  }
});

Deno.test("redact() hides a password holding a quote, an angle bracket, a space or a slash", () => {
  for (
    const password of [`pa"ss`, `pa'ss`, "pa<ss", "pa>ss", "pa ss", "pa/ss", `"'<> /@:x`]
  ) {
    const text = `cannot connect to amqp://order:${password}@rabbit.example:5672/campus: refused`;
    assert.equal(
      redact(text),
      "cannot connect to amqp://order:***@rabbit.example:5672/campus: refused",
      password,
    );
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
    assert.equal(
      redact(`POST https://hook.example/in?order_id=o1&${name}=s3cr%2Fet&x=1 failed`),
      `POST https://hook.example/in?order_id=o1&${name}=***&x=1 failed`,
      name,
    );
    assert.equal(redact(`http://h/p?${name}=s3cret`), `http://h/p?${name}=***`, name);
  }
  assert.equal(
    redact("https://app.example/cb#access_token=abc"),
    "https://app.example/cb#access_token=***",
  );
  assert.equal(
    redact("postgres://u:pw@db/food?sslmode=require&password=pw2"),
    "postgres://u:***@db/food?sslmode=require&password=***",
  );
});

Deno.test("redact() leaves ports, paths and harmless query parameters as they are", () => {
  for (
    const text of [
      "http://127.0.0.1:8003/notifications?user_id=alice@uni.example",
      "http://127.0.0.1:8001/orders?order_id=01J&sku=burger&qty=2",
      "amqp://rabbit:5672/campus, then mailto:someone@example.com",
      "GET /metrics?name=x done",
    ]
  ) {
    assert.equal(redact(text), text);
  }
});
