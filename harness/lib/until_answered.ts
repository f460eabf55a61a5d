/**
 * A careful client: it sends an order, or a cancellation, again until it is answered, to
 * whichever order instance runs, with the same `Idempotency-Key`, after a `Retry-After` when it got
 * one. What chaos, scale and cluster send while things break.
 * @module
 */
import { describeError } from "../../shared/log.ts";
import { sleep } from "./async.ts";
import { type OrderRequest, postOrder, request } from "./http_probes.ts";

/** Answers after which sending an order again cannot help: the request itself is wrong. */
const FINAL_STATUSES = new Set([400, 409, 413, 415]);

/** What sending one order until it was answered came to. */
export interface Placed {
  /** Set when the order API answered 202. */
  orderId?: string;
  /** POSTs sent: more than one when the first got no 202. */
  attempts: number;
  /** The 202 said `Idempotent-Replayed`: an earlier attempt had been committed, its answer lost. */
  replayed: boolean;
  /** Why no 202 came. */
  error?: string;
}

/** Options for {@linkcode placeUntilAnswered}. */
export interface PlaceOptions {
  /** The `Idempotency-Key` every attempt carries. */
  key: string;
  /** How long to keep sending, in milliseconds. */
  deadlineMs: number;
  /** Called after each attempt that got no 202, before the next. @default {nothing} */
  afterFailure?: () => void;
}

/**
 * POSTs `order` to the order API at `orderUrl()` until it answers 202, as a careful client does:
 * after a failure (no instance runs, it died under the request, or it answered 5xx), after its
 * `Retry-After` if it gave one, again with the same `Idempotency-Key` to wherever `orderUrl()` then
 * points, so that an order committed just before its answer was lost comes back rather than being
 * made twice. Never rejects: without a 202
 * before the deadline, or after a 4xx, the result says why.
 */
export async function placeUntilAnswered(
  orderUrl: () => string | undefined,
  order: OrderRequest,
  options: PlaceOptions,
): Promise<Placed> {
  const { key, deadlineMs, afterFailure = () => {} } = options;
  const deadline = Date.now() + deadlineMs;
  let attempts = 0;
  let error = "no order instance was running";
  while (Date.now() < deadline) {
    let pauseMs = 50;
    const url = orderUrl();
    if (url) {
      attempts++;
      try {
        const response = await postOrder(url, order, { "idempotency-key": key });
        const text = await response.text();
        if (response.status === 202) {
          const replayed = response.headers.get("idempotent-replayed") === "true";
          return { orderId: JSON.parse(text).order_id, attempts, replayed };
        }
        error = `POST /order answered ${response.status}: ${text.slice(0, 200)}`;
        if (FINAL_STATUSES.has(response.status)) break;
        // A 503 (the database is out, or too many requests are in hand) says when to ask again.
        const retryAfterS = Number(response.headers.get("retry-after"));
        if (retryAfterS > 0) pauseMs = Math.min(retryAfterS * 1000, deadline - Date.now());
      } catch (cause) {
        error = describeError(cause);
      }
      afterFailure();
    }
    await sleep(pauseMs);
  }
  return { attempts, replayed: false, error };
}

/** What sending one cancellation until it was answered came to. */
export interface CancelAnswer {
  /** The answer's status: 202 (cancelled), 409 (rejected or expired first); 0 when none came. */
  status: number;
  /** The status the answer gave the order. */
  orderStatus?: string;
  attempts: number;
}

/**
 * POSTs `/orders/{orderId}/cancel` to the order API at `orderUrl()` until it answers 202, 404 or
 * 409, as a careful client does: a cancellation answers the same when it is repeated, so one whose
 * answer was lost is simply sent again. Never rejects: without an answer before the deadline, the
 * status is 0.
 */
export async function cancelUntilAnswered(
  orderUrl: () => string | undefined,
  orderId: string,
  options: { deadlineMs: number },
): Promise<CancelAnswer> {
  const deadline = Date.now() + options.deadlineMs;
  let attempts = 0;
  while (Date.now() < deadline) {
    const url = orderUrl();
    if (url) {
      attempts++;
      try {
        const response = await request(`${url}/orders/${orderId}/cancel`, { method: "POST" });
        const body = await response.json().catch(() => undefined);
        if ([202, 404, 409].includes(response.status)) {
          return { status: response.status, orderStatus: body?.status, attempts };
        }
      } catch {
        // The order service died under the request, or is down: send it again.
      }
    }
    await sleep(50);
  }
  return { status: 0, attempts };
}
