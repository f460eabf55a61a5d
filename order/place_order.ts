/**
 * Placing an order: the order row, its `OrderPlaced` event in the outbox and the idempotency key,
 * all in one transaction, so an accepted order is always published and never twice created.
 * @module
 */
import { lockForTransaction, type Store, type Tx } from "../shared/store.ts";
import { type OrderItem, orderPlaced } from "../shared/events.ts";
import { enqueueOutbox } from "../shared/outbox.ts";
import { newId } from "../shared/ids.ts";
import { childTraceparent } from "../shared/traceparent.ts";
import { DEFAULT_ORDER_DECISION_TIMEOUT_MS } from "./config.ts";
import {
  claimIdempotencyKey,
  countOpenUnits,
  findIdempotencyKey,
  getOrder,
  insertOrder,
  type OrderView,
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
  | { kind: "conflict" }
  | { kind: "over_unit_limit"; limit: number; held: number; requested: number };

/** Options for {@linkcode placeOrder}. */
export interface PlaceOrderOptions {
  /** With a key, a retry of the same request returns the same order. @default {none} */
  idempotencyKey?: string;
  /** The trace the `OrderPlaced` message carries. @default {a new trace} */
  traceparent?: string;
  /**
   * `ORDER_DECISION_TIMEOUT` in milliseconds, which sets the order's `decide_by`.
   * @default {DEFAULT_ORDER_DECISION_TIMEOUT_MS}
   */
  decisionTimeoutMs?: number;
  /**
   * `MAX_UNITS_PER_STUDENT`: the most units the student's PENDING and CONFIRMED orders may hold
   * together, this one included. @default {no cap}
   */
  maxUnitsPerStudent?: number;
}

/** Thrown inside the transaction to roll back the key it claimed; never leaves this module. */
class OverUnitLimit extends Error {
  override name = "OverUnitLimit";
  constructor(readonly held: number, readonly requested: number) {
    super(`Cannot place the order as it would hold ${held + requested} units`);
  }
}

/** Places `request`; see {@linkcode PlaceOrderOptions}. */
export async function placeOrder(
  store: Store,
  request: OrderRequest,
  options: PlaceOrderOptions = {},
): Promise<PlaceResult> {
  const {
    idempotencyKey,
    traceparent = childTraceparent(),
    decisionTimeoutMs = DEFAULT_ORDER_DECISION_TIMEOUT_MS,
    maxUnitsPerStudent,
  } = options;
  const requestHash = idempotencyKey === undefined ? "" : await hashRequest(request);
  const requested = request.items.reduce((units, item) => units + item.qty, 0);
  try {
    return await store.transaction(placeInTransaction);
  } catch (error) {
    if (!(error instanceof OverUnitLimit)) throw error;
    return { kind: "over_unit_limit", limit: maxUnitsPerStudent!, held: error.held, requested };
  }

  async function placeInTransaction(tx: Tx): Promise<PlaceResult> {
    // Concurrent orders of one student (other instances included, on PostgreSQL) take turns, so
    // each counts the units of those committed before it; SQLite has one writer at a time.
    if (maxUnitsPerStudent !== undefined) {
      await lockForTransaction(tx, [`units of ${request.user_id}`]);
    }
    const placedAt = Date.now();
    const now = new Date(placedAt).toISOString();
    const order = {
      order_id: newId(),
      user_id: request.user_id,
      items: request.items.map(({ sku, qty }) => ({ sku, qty })),
      created_at: now,
    };
    // The key is claimed before anything is written, so two concurrent retries make one order.
    if (
      idempotencyKey !== undefined &&
      !(await claimIdempotencyKey(tx, idempotencyKey, {
        userId: request.user_id,
        orderId: order.order_id,
        requestHash,
      }))
    ) {
      const previous = await findIdempotencyKey(tx, request.user_id, idempotencyKey);
      if (previous?.request_hash !== requestHash) return { kind: "conflict" };
      const existing = await getOrder(tx, previous.order_id);
      if (!existing) {
        throw new Error(`Cannot find order ${previous.order_id} of an idempotency key`);
      }
      return { kind: "replayed", order: existing };
    }
    if (maxUnitsPerStudent !== undefined) {
      const held = await countOpenUnits(tx, request.user_id);
      if (held + requested > maxUnitsPerStudent) throw new OverUnitLimit(held, requested);
    }
    await insertOrder(tx, order, { traceparent });
    const decideBy = new Date(placedAt + decisionTimeoutMs).toISOString();
    const event = orderPlaced({ ...order, decide_by: decideBy });
    await enqueueOutbox(tx, [{ event, headers: { traceparent } }]);
    return { kind: "created", order: { ...order, status: "PENDING", updated_at: now } };
  }
}

async function hashRequest(request: OrderRequest): Promise<string> {
  const canonical = JSON.stringify([
    request.user_id,
    request.items.map(({ sku, qty }) => [sku, qty]),
  ]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}
