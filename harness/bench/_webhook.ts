/**
 * The webhook sender's throughput: a backlog of pending deliveries written into notification's
 * SQLite file before it starts, then drained by the real service to a local receiver that verifies
 * every signature and answers 204. Timed from the receiver's first request to the last delivery.
 * Also how the end-to-end and latency runs see deliveries arrive ({@linkcode watchDeliveries}).
 * @module
 */
import { waitFor } from "../lib/async.ts";
import { withStack } from "../lib/stack.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../lib/webhook_receiver.ts";
import { round } from "../lib/format.ts";
import { openStore } from "../../shared/store.ts";
import { newId } from "../../shared/ids.ts";
import { NOTIFICATION_MIGRATIONS, notifyOrder } from "../../notification/notifications.ts";

/** What {@linkcode measureWebhook} found. */
export interface WebhookResult {
  deliveries: number;
  seconds: number;
  deliveriesPerSec: number;
}

/** Drains `deliveries` pending webhook deliveries through notification (SQLite) to a local receiver. */
export async function measureWebhook(
  deliveries: number,
  options: { log: (line: string) => void },
): Promise<WebhookResult> {
  const receiver = startWebhookReceiver();
  try {
    return await withStack(
      { services: [], serviceEnv: { notification: receiver.env } },
      async (stack) => {
        options.log(`webhook: writing ${deliveries} pending deliveries`);
        const store = await openStore(stack.dataDir, "notification", {
          migrations: NOTIFICATION_MIGRATIONS,
        });
        try {
          for (let start = 0; start < deliveries; start += 500) {
            await store.transaction(async (tx) => {
              for (let i = start; i < Math.min(deliveries, start + 500); i++) {
                await notifyOrder(tx, {
                  kind: "order_confirmed",
                  order: { order_id: newId(), user_id: `u${i}` },
                }, { webhook: true });
              }
            });
          }
        } finally {
          await store.close();
        }
        await stack.start("notification");
        const delivered = new Set<string>();
        const last = await waitFor(`${deliveries} webhook deliveries`, () => {
          for (const r of receiver.received) if (r.status === 204) delivered.add(r.id);
          return delivered.size >= deliveries &&
            Math.max(...receiver.received.map((r) => r.answeredAt ?? 0));
        }, { timeoutMs: 120_000, intervalMs: 20 });
        const invalid = receiver.received.filter((r) => !r.valid).length;
        if (invalid > 0) throw new Error(`Cannot measure webhooks as ${invalid} signatures failed`);
        const seconds = (last - receiver.received[0].at) / 1000;
        return {
          deliveries,
          seconds: round(seconds, 2),
          deliveriesPerSec: Math.round(deliveries / seconds),
        };
      },
    );
  } finally {
    await receiver.close();
  }
}

/** The orders whose notification reached a receiver; see {@linkcode watchDeliveries}. */
export interface DeliveryWatch {
  /**
   * When the first request of each order that the receiver answered 2xx arrived, `Date.now()`
   * milliseconds, by order id, as of this call.
   */
  deliveredAt(): ReadonlyMap<string, number>;
}

/**
 * Follows what `receiver` gets, reading each request once: the bench polls it every few
 * milliseconds, and thousands of requests must not be read again at every poll.
 */
export function watchDeliveries(receiver: WebhookReceiver): DeliveryWatch {
  const deliveredAt = new Map<string, number>();
  let read = 0;
  return {
    deliveredAt() {
      // Up to the first request not answered yet: its status decides whether it counts.
      while (read < receiver.received.length && receiver.received[read].status !== undefined) {
        const { body, status, valid, at } = receiver.received[read++];
        if (!valid || status! < 200 || status! >= 300) continue;
        const orderId = String(JSON.parse(body).data.order_id);
        if (!deliveredAt.has(orderId)) deliveredAt.set(orderId, at);
      }
      return deliveredAt;
    },
  };
}
