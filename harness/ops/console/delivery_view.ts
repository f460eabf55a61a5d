/**
 * Webhook delivery as the page shows it: how many deliveries are pending and failed, and the
 * newest failed ones, read from notification's `GET /deliveries?status=failed` with the console's
 * own token.
 * @module
 */
import type { DeliveryListing, OpenDelivery } from "../../../notification/webhook_deliveries.ts";
import { getJson } from "./probes.ts";

/** What the page shows of webhook delivery. */
export interface DeliveryView {
  counts: DeliveryListing["counts"];
  /** The newest failed deliveries, at most 100. */
  failed: OpenDelivery[];
}

/** A `webhook-id` as notification makes them: `msg_` and a ULID. */
const WEBHOOK_ID = /^msg_[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * True when `id` is a `webhook-id` notification could have made. The console puts ids into form
 * actions, and an id is whatever the service answered.
 */
export function isWebhookId(id: unknown): id is string {
  return typeof id === "string" && WEBHOOK_ID.test(id);
}

/**
 * Reads the deliveries of the notification service at `baseUrl`; undefined while it does not run,
 * and from an earlier version, which has no `/deliveries` (404).
 * @throws {Error} saying what notification answered, when it refused (a missing token, say)
 */
export async function readDeliveries(
  baseUrl: string | undefined,
  options: { token?: string } = {},
): Promise<DeliveryView | undefined> {
  if (!baseUrl) return undefined;
  const { status, body } = await getJson(`${baseUrl}/deliveries?status=failed`, options);
  if (status === 404) return undefined;
  if (status !== 200) {
    const error = (body as { error?: unknown })?.error;
    throw new Error(`notification answered ${status}${error ? `: ${error}` : ""}`);
  }
  const { counts, deliveries } = body as DeliveryListing;
  return { counts, failed: deliveries };
}
