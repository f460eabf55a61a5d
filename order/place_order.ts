/**
 * Placing an order: the order row, its `OrderPlaced` event in the outbox and the idempotency key,
 * all in one transaction, so an accepted order is always published and never twice created.
 * @module
 */
import type { Store } from "../shared/store.ts";
import { type OrderItem, orderPlaced } from "../shared/events.ts";
import { enqueueOutbox } from "../shared/outbox.ts";
import { newId } from "../shared/ids.ts";
import { childTraceparent } from "../shared/trace.ts";
import {
  findIdempotencyKey,
  getOrder,
  insertOrder,
  type OrderView,
  saveIdempotencyKey,
} from "./orders.ts";

/** A validated `POST /order` body. */
export interface OrderRequest {
  user_id: string;
  items: OrderItem[];
}

/** What placing an order did. */
export type PlaceResult =
  | { kind: "created"; order: OrderView }
  | { kind: "replayed"; order: OrderView }
  | { kind: "conflict" };

/** Options for {@linkcode placeOrder}. */
export interface PlaceOrderOptions {
  /** With a key, a retry of the same request returns the same order. @default {none} */
  idempotencyKey?: string;
  /** The trace the `OrderPlaced` message carries. @default {a new trace} */
  traceparent?: string;
}

/** Places `request`; see {@linkcode PlaceOrderOptions}. */
export async function placeOrder(
  store: Store,
  request: OrderRequest,
  options: PlaceOrderOptions = {},
): Promise<PlaceResult> {
  const { idempotencyKey, traceparent = childTraceparent() } = options;
  const requestHash = idempotencyKey === undefined ? "" : await hashRequest(request);
  return store.transaction(async (tx) => {
    if (idempotencyKey !== undefined) {
      const previous = await findIdempotencyKey(tx, idempotencyKey);
      if (previous && previous.request_hash !== requestHash) {
        return { kind: "conflict" };
      }
      const order = previous && await getOrder(tx, previous.order_id);
      if (order) return { kind: "replayed", order };
    }
    const now = new Date().toISOString();
    const order = {
      order_id: newId(),
      user_id: request.user_id,
      items: request.items.map(({ sku, qty }) => ({ sku, qty })),
      created_at: now,
    };
    await insertOrder(tx, order);
    await enqueueOutbox(tx, orderPlaced(order), { traceparent });
    if (idempotencyKey !== undefined) {
      await saveIdempotencyKey(tx, idempotencyKey, { orderId: order.order_id, requestHash });
    }
    return { kind: "created", order: { ...order, status: "PENDING", updated_at: now } };
  });
}

async function hashRequest(request: OrderRequest): Promise<string> {
  const canonical = JSON.stringify([
    request.user_id,
    request.items.map(({ sku, qty }) => [sku, qty]),
  ]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
