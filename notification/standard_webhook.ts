/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): the headers of one attempt and its
 * signature, `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the
 * bytes a `whsec_` secret encodes. WebCrypto does the HMAC, so sending needs no dependency.
 * @module
 */

/** The prefix of a Standard Webhooks secret; the rest is the key in base64. */
const SECRET_PREFIX = "whsec_";

/**
 * The key bytes of a `whsec_<base64>` secret.
 * @throws {RangeError} when `secret` lacks the prefix or its rest is not base64 of 24 to 64 bytes
 */
export function parseWebhookSecret(secret: string): Uint8Array {
  if (!secret.startsWith(SECRET_PREFIX)) {
    throw new RangeError(
      `Cannot read the webhook secret as it must start with ${SECRET_PREFIX}: current value has ${secret.length} characters`,
    );
  }
  const base64 = secret.slice(SECRET_PREFIX.length);
  let key: Uint8Array;
  try {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new Error("not base64");
    key = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  } catch {
    throw new RangeError(
      `Cannot read the webhook secret as what follows ${SECRET_PREFIX} must be base64: current value has ${base64.length} characters`,
    );
  }
  // The Standard Webhooks spec asks for 24 to 64 bytes of key.
  if (key.length < 24 || key.length > 64) {
    throw new RangeError(
      `Cannot read the webhook secret as its key must be 24 to 64 bytes: current value is ${key.length} bytes`,
    );
  }
  return key;
}

/** A signer of attempts with one key; the key is imported once. */
export interface WebhookSigner {
  /** The `webhook-signature` value of `body` sent as `webhookId` at `timestamp` (unix seconds). */
  sign(webhookId: string, timestamp: number, body: string): Promise<string>;
}

/** Creates a signer with `key`, the bytes of a `whsec_` secret (see {@linkcode parseWebhookSecret}). */
export function webhookSigner(key: Uint8Array): WebhookSigner {
  const imported = crypto.subtle.importKey(
    "raw",
    new Uint8Array(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const encoder = new TextEncoder();
  return {
    async sign(webhookId, timestamp, body) {
      const content = encoder.encode(`${webhookId}.${timestamp}.${body}`);
      const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await imported, content));
      return `v1,${btoa(String.fromCharCode(...mac))}`;
    },
  };
}

/** The headers of one attempt to deliver `body` as `webhookId`, signed now (`timestamp`). */
export async function webhookHeaders(
  signer: WebhookSigner,
  attempt: { webhookId: string; timestamp: number; body: string },
): Promise<Record<string, string>> {
  const { webhookId, timestamp, body } = attempt;
  return {
    "content-type": "application/json",
    "webhook-id": webhookId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": await signer.sign(webhookId, timestamp, body),
  };
}
