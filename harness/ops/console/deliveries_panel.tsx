/**
 * The webhook deliveries panel: how many are pending and failed, and each failed one with its
 * order, kind, attempts and last error, and a form to retry it.
 * @module
 */
import type { Snapshot } from "./live.ts";
import { isWebhookId } from "./delivery_view.ts";

/** How many failed deliveries the panel lists; the rest are counted. */
const SHOWN = 20;

/** Pending and failed webhook deliveries, the failed ones one by one. */
export function Deliveries({ snapshot }: { snapshot: Snapshot }) {
  const view = snapshot.deliveries;
  if (!view) {
    return <p class="hint">Nothing read: notification is not running, or has no /deliveries.</p>;
  }
  const { pending, failed } = view.counts;
  const shown = view.failed.slice(0, SHOWN);
  return (
    <>
      <p class="delivery-counts">
        <span data-count="pending">{pending} pending</span> ·{" "}
        <span data-count="failed" class={failed > 0 ? "bad" : ""}>{failed} failed</span>
      </p>
      {shown.length > 0 && (
        <ul class="deliveries">
          {shown.map((delivery) => (
            <li data-webhook-id={delivery.webhook_id} data-order-id={delivery.order_id}>
              <div class="letter-head">
                <code title={delivery.webhook_id}>…{delivery.webhook_id.slice(-8)}</code>
                <span title={delivery.order_id}>order …{delivery.order_id.slice(-8)}</span>
                <span>{delivery.kind.replace("order_", "")}</span>
                <span>attempts {delivery.attempts}</span>
                {isWebhookId(delivery.webhook_id) && (
                  <form
                    method="post"
                    action={`/deliveries/${encodeURIComponent(delivery.webhook_id)}/retry`}
                    class="inline"
                  >
                    <button type="submit">Retry</button>
                  </form>
                )}
              </div>
              {delivery.last_error && <p class="reason">{delivery.last_error}</p>}
            </li>
          ))}
        </ul>
      )}
      {failed > shown.length && (
        <p class="hint">and {failed - shown.length} more failed, not listed here</p>
      )}
    </>
  );
}
