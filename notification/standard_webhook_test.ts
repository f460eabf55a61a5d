import assert from "node:assert/strict";
import { Webhook } from "standardwebhooks";
import { parseWebhookSecret, webhookHeaders, webhookSigner } from "./standard_webhook.ts";

// The example of the Standard Webhooks spec and of Svix's documentation.
const VECTOR = {
  secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
};

Deno.test("webhookSigner() signs the spec's example as the spec does", async () => {
  const signer = webhookSigner(parseWebhookSecret(VECTOR.secret));
  assert.equal(await signer.sign(VECTOR.id, VECTOR.timestamp, VECTOR.body), VECTOR.signature);
});

Deno.test("webhookHeaders() are verified by the standardwebhooks library, and a changed body is not", async () => {
  const secret = `whsec_${
    btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))
  }`;
  const signer = webhookSigner(parseWebhookSecret(secret));
  const body = JSON.stringify({ type: "order.confirmed", data: { order_id: "o1", note: "ü 🍔" } });
  const headers = await webhookHeaders(signer, {
    webhookId: "msg_01",
    timestamp: Math.floor(Date.now() / 1000),
    body,
  });
  assert.equal(headers["content-type"], "application/json");
  const receiver = new Webhook(secret);
  assert.deepEqual(receiver.verify(body, headers), JSON.parse(body));
  assert.throws(() => receiver.verify(body.replace("o1", "o2"), headers));
  const other = new Webhook(`whsec_${btoa("x".repeat(32))}`);
  assert.throws(() => other.verify(body, headers));
});

Deno.test("parseWebhookSecret() refuses a secret without whsec_, not base64, or of a short key", () => {
  assert.throws(
    () => parseWebhookSecret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    /must start with whsec_/,
  );
  assert.throws(() => parseWebhookSecret("whsec_not base64!"), /must be base64/);
  assert.throws(
    () => parseWebhookSecret(`whsec_${btoa("short")}`),
    /24 to 64 bytes: current value is 5/,
  );
  assert.equal(parseWebhookSecret(VECTOR.secret).length, 24);
});
