/**
 * What a scenario proves of webhook delivery (SPEC guarantee 7): every notification recorded
 * reached the receiver with a 2xx under one `webhook-id`, none was delivered that was not
 * recorded, and every request was signed; repeats of one id are allowed (at least once) and
 * counted.
 * @module
 */
import { waitFor } from "./async.ts";
import type { Report } from "./scenario.ts";
import type { WebhookReceiver } from "./webhook_receiver.ts";

/** What the receiver got, against what notification recorded. */
export interface DeliveryCount {
  /** Notifications recorded: `order_id kind`. */
  recorded: number;
  /** Recorded notifications delivered with a 2xx. */
  delivered: number;
  /** Deliveries beyond the first of one `webhook-id`: what a receiver drops by its id. */
  repeats: number;
  /** What breaks the guarantee: a notification under two ids, one not recorded, a bad signature. */
  violations: string[];
}

/** Counts the deliveries `receiver` got for the notifications `recorded` (`order_id kind`). */
export function countDeliveries(
  receiver: WebhookReceiver,
  recorded: ReadonlySet<string>,
): DeliveryCount {
  const violations: string[] = [];
  const unsigned = receiver.received.filter((r) => !r.valid).length;
  if (unsigned > 0) violations.push(`${unsigned} requests whose signature did not verify`);
  const idsOf = new Map<string, Set<string>>();
  let deliveries = 0;
  const deliveredIds = new Set<string>();
  for (const request of receiver.received) {
    if (!request.valid || !request.status || request.status >= 300) continue;
    const { data } = JSON.parse(request.body) as { data: { order_id: string; kind: string } };
    const notification = `${data.order_id} ${data.kind}`;
    idsOf.set(notification, (idsOf.get(notification) ?? new Set()).add(request.id));
    deliveredIds.add(request.id);
    deliveries++;
  }
  for (const [notification, ids] of idsOf) {
    if (ids.size > 1) violations.push(`${notification} delivered under ${ids.size} webhook-ids`);
    if (!recorded.has(notification)) violations.push(`${notification} delivered, never recorded`);
  }
  const delivered = [...recorded].filter((n) => idsOf.has(n)).length;
  return {
    recorded: recorded.size,
    delivered,
    repeats: deliveries - deliveredIds.size,
    violations,
  };
}

/** Waits, up to `timeoutMs`, until every notification of `recorded` was delivered. */
export async function waitDelivered(
  receiver: WebhookReceiver,
  recorded: ReadonlySet<string>,
  timeoutMs: number,
): Promise<DeliveryCount> {
  await waitFor(
    "every recorded notification at the webhook",
    () => countDeliveries(receiver, recorded).delivered === recorded.size,
    { timeoutMs, intervalMs: 250 },
  ).catch(() => {});
  return countDeliveries(receiver, recorded);
}

/**
 * Waits, up to `timeoutMs`, for every notification of `recorded` (`order_id kind`) at `receiver`,
 * then expects each delivered under one id, nothing else delivered and every request signed, and
 * reports `webhook_recorded`, `webhook_delivered` and `webhook_repeats`: a scenario's check.
 */
export async function expectDelivered(
  report: Report,
  receiver: WebhookReceiver,
  options: { recorded: ReadonlySet<string>; timeoutMs: number },
): Promise<DeliveryCount> {
  const deliveries = await waitDelivered(receiver, options.recorded, options.timeoutMs);
  report.expect(
    deliveries.delivered === deliveries.recorded && deliveries.violations.length === 0,
    "every recorded notification delivered to the webhook under one webhook-id, every request signed",
    `${deliveries.delivered} of ${deliveries.recorded} delivered; ${
      deliveries.violations.slice(0, 3).join("; ")
    }`,
  );
  report.figure("webhook_recorded", deliveries.recorded);
  report.figure("webhook_delivered", deliveries.delivered);
  report.figure("webhook_repeats", deliveries.repeats);
  return deliveries;
}
