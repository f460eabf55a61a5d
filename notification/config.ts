/**
 * What the notification service reads from the environment besides what every service reads:
 * where to send notifications, and the secret that signs them.
 * @module
 */
import { z } from "zod";
import { type Rule, variable } from "../shared/config.ts";

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

/** The notification service's own variables. */
export const NOTIFICATION_VARIABLES = {
  notifyWebhookUrl: variable(
    "NOTIFY_WEBHOOK_URL",
    z.url({ protocol: /^https?$/, hostname: /./ }).optional(),
    { expected: "an http:// or https:// URL to POST notifications to" },
  ),
  notifyWebhookKey: variable("NOTIFY_WEBHOOK_SECRET", webhookSecret.optional(), {
    expected: "whsec_ followed by a base64 key of 24 to 64 bytes, given with NOTIFY_WEBHOOK_URL",
    secret: true,
  }),
};

/** The URL and the secret come together. */
export const NOTIFICATION_RULES: Rule<typeof NOTIFICATION_VARIABLES>[] = [
  // An unsigned webhook would let anyone who finds the receiver's URL tell students anything.
  (c) =>
    c.notifyWebhookUrl && !c.notifyWebhookKey
      ? {
        blame: "notifyWebhookKey",
        message: "NOTIFY_WEBHOOK_URL is set, and every delivery is signed with it",
      }
      : undefined,
  (c) =>
    c.notifyWebhookKey && !c.notifyWebhookUrl
      ? {
        blame: "notifyWebhookKey",
        message: "NOTIFY_WEBHOOK_URL is not set, so nothing is sent or signed",
      }
      : undefined,
];

/**
 * Where notification POSTs each notification and the key it signs them with; undefined:
 * notifications are only recorded.
 */
export function webhookOf(
  config: { notifyWebhookUrl?: string; notifyWebhookKey?: Uint8Array },
): { url: string; key: Uint8Array } | undefined {
  const { notifyWebhookUrl: url, notifyWebhookKey: key } = config;
  return url && key ? { url, key } : undefined;
}
