/**
 * The steady stream of orders that the fault scenarios (chaos, cluster) send while things break:
 * open loop, each order resent with its `Idempotency-Key` until it is answered.
 * @module
 */
import { sleep } from "./async.ts";
import { stockEnv } from "./menu.ts";
import type { Stack } from "./stack.ts";
import { type Placed, placeUntilAnswered } from "./until_answered.ts";

/** Plenty of burgers; few cookies, so that some orders are rejected for want of stock. */
export const STREAM_STOCK: Readonly<Record<"burger" | "cookie", number>> = {
  burger: 100_000,
  cookie: 40,
};

/** {@linkcode STREAM_STOCK} as `INVENTORY_STOCK` takes it. */
export const STREAM_STOCK_ENV: string = stockEnv(STREAM_STOCK);

/** How long a client keeps sending an order that got no answer, in milliseconds. */
export const ANSWER_DEADLINE_MS = 20_000;

/** What became of one order of the stream. */
export interface StreamedOrder extends Placed {
  /** Cookies it asked for besides its burger (0 or 1). */
  cookies: number;
  /** When its first POST was sent, in epoch milliseconds (the services' clock). */
  sentAtMs: number;
}

/** Options for {@linkcode streamOrders}. */
export interface StreamOptions {
  /** How long to send orders, in seconds. @default {until `signal` aborts} */
  seconds?: number;
  /** Orders per second. */
  rate: number;
  /** Prefix of each order's `user_id` and `Idempotency-Key`. */
  label: string;
  /** Ends the stream before `seconds` are up. @default {never} */
  signal?: AbortSignal;
}

/**
 * Posts `rate` orders a second for `seconds`, open loop: a slow or dead order service does not slow
 * the stream down. Each order buys a burger, and every third one a cookie too. A client that gets
 * no answer sends its order again with its `Idempotency-Key`, which must not make it twice.
 * Resolves once every order was answered or given up on; rejects then with the first error of
 * an order, if one failed otherwise.
 */
export async function streamOrders(
  stack: Stack,
  options: StreamOptions,
  onResult: (result: StreamedOrder) => void,
): Promise<void> {
  const { seconds = Infinity, rate, label, signal } = options;
  const total = Math.round(seconds * rate);
  const began = performance.now();
  // Only the orders not answered yet: a two-hour soak sends a million.
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for (let i = 0; i < total && !signal?.aborted; i++) {
    await sleep(began + (i * 1000) / rate - performance.now());
    const cookies = i % 3 === 0 ? 1 : 0;
    const items = [
      { sku: "burger", qty: 1 },
      ...(cookies ? [{ sku: "cookie", qty: cookies }] : []),
    ];
    const sentAtMs = Date.now();
    const order: Promise<void> = (async () => {
      const placed = await placeUntilAnswered(
        () => stack.services.order?.url,
        { user_id: `${label}-${i}`, items },
        { key: `${label}-${i}-${crypto.randomUUID()}`, deadlineMs: ANSWER_DEADLINE_MS },
      );
      onResult({ ...placed, cookies, sentAtMs });
    })().catch((error) => void (failure ??= { error })).finally(() => inFlight.delete(order));
    inFlight.add(order);
  }
  await Promise.all(inFlight);
  if (failure) throw failure.error;
}
