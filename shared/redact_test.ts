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
