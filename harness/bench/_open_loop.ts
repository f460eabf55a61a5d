/**
 * Orders as the latency runs send them, open loop (each POST goes at its time whether or not
 * earlier ones were answered, as students would), and what became of each: when the order service
 * logged its decision, when notification logged the student's message, and, with a webhook
 * receiver, when the notification reached it.
 * @module
 */
import { sleep } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import { notificationSent } from "../lib/effects.ts";
import { postOrder as postOrderRequest } from "../lib/http_probes.ts";
import type { RunningService } from "../lib/service_process.ts";
import { benchOrder } from "./_stack.ts";
import type { DeliveryWatch } from "./_webhook.ts";

/**
 * POSTs order `i` of the workload and times the round trip.
 * @throws {Error} when it is not accepted with 202
 */
export async function postOrder(
  orderUrl: string,
  i: number,
): Promise<{ orderId: string; ms: number }> {
  const began = performance.now();
  const response = await postOrderRequest(orderUrl, benchOrder(i));
  const text = await response.text();
  const ms = performance.now() - began;
  if (response.status !== 202) {
    throw new Error(`Cannot place an order as POST /order answered ${response.status}: ${text}`);
  }
  return { orderId: JSON.parse(text).order_id, ms };
}

/** What {@linkcode sendOpenLoop} sent. */
export interface SentOrders {
  /** When each accepted order's POST was sent, `Date.now()` milliseconds, by order id. */
  sentAtMs: Map<string, number>;
  /** Round trips of the accepted POSTs, in milliseconds. */
  httpMs: number[];
  /**
   * POSTs not accepted: answered another status than 202 (such as 503 once `HTTP_MAX_IN_FLIGHT`
   * requests wait) or not answered at all. The first one's error is in `refusal`.
   */
  refused: number;
  refusal?: string;
  /** Orders per second really sent: a busy harness may fall behind the rate asked for. */
  sentPerSec: number;
}

/**
 * POSTs orders `first … first + count - 1` of the workload at `rate` per second, open loop, and
 * resolves once every POST was answered.
 */
export async function sendOpenLoop(
  orderUrl: string,
  options: { rate: number; count: number; first: number },
): Promise<SentOrders> {
  const { rate, count, first } = options;
  const sent: SentOrders = { sentAtMs: new Map(), httpMs: [], refused: 0, sentPerSec: rate };
  const inFlight: Promise<void>[] = [];
  const began = performance.now();
  let lastSend = began;
  for (let i = 0; i < count; i++) {
    await sleep(began + (i * 1000) / rate - performance.now());
    lastSend = performance.now();
    const wallClock = Date.now();
    inFlight.push(
      postOrder(orderUrl, first + i).then(({ orderId, ms }) => {
        sent.sentAtMs.set(orderId, wallClock);
        sent.httpMs.push(ms);
      }, (error) => {
        sent.refused++;
        sent.refusal ??= error instanceof Error ? error.message : String(error);
      }),
    );
  }
  await Promise.all(inFlight);
  // n sends span n - 1 intervals.
  if (count > 1) sent.sentPerSec = round((count - 1) / ((lastSend - began) / 1000), 1);
  return sent;
}

/** When each order's outcome was seen, `Date.now()` milliseconds, by order id. */
export interface OrderOutcomes {
  /** The order service logged its decision (the status change, after the commit). */
  decidedAt: ReadonlyMap<string, number>;
  /** Notification logged the student's message (after the commit). */
  notifiedAt: ReadonlyMap<string, number>;
  /** The notification reached the webhook receiver; empty without one. */
  deliveredAt(): ReadonlyMap<string, number>;
  /** Reads the lines the services logged since the last call, and forgets them. */
  collect(): void;
}

/**
 * Follows the outcomes of every order from the JSON log lines of `order` and `notification`
 * (stamped in ms by the same clock as the send times), and from `delivered` when given. Each line
 * is read once and then dropped: a sweep of many thousands of orders must neither read them again
 * at every poll nor keep them.
 */
export function watchOrderOutcomes(
  services: { order: RunningService; notification: RunningService },
  delivered?: DeliveryWatch,
): OrderOutcomes {
  const decidedAt = new Map<string, number>();
  const notifiedAt = new Map<string, number>();
  const none = new Map<string, number>();
  return {
    decidedAt,
    notifiedAt,
    deliveredAt: () => delivered?.deliveredAt() ?? none,
    collect() {
      const { order, notification } = services;
      for (const line of order.logs) {
        if (line.msg === "updated order status") {
          decidedAt.set(String(line.order_id), Date.parse(String(line.time)));
        }
      }
      order.logs.length = 0;
      for (const line of notification.logs) {
        const notified = notificationSent(line);
        if (notified) notifiedAt.set(notified.orderId, notified.atMs);
      }
      notification.logs.length = 0;
    },
  };
}

/** Milliseconds from each order's send to its time in `at`, for the orders of `sentAtMs`. */
export function sinceSent(
  sentAtMs: ReadonlyMap<string, number>,
  at: ReadonlyMap<string, number>,
): number[] {
  return [...sentAtMs].filter(([id]) => at.has(id)).map(([id, sent]) => at.get(id)! - sent);
}

/** How many orders of `sentAtMs` have a time in `at`. */
export function countSeen(
  sentAtMs: ReadonlyMap<string, number>,
  at: ReadonlyMap<string, number>,
): number {
  let seen = 0;
  for (const id of sentAtMs.keys()) if (at.has(id)) seen++;
  return seen;
}
