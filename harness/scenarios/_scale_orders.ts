/**
 * The orders of the scale-out scenario (`scale.ts`): which are planned, and how each is placed
 * so that it survives the death of the order instance it was sent to: sent again, with its
 * `Idempotency-Key`, to whichever order instance runs.
 * @module
 */
import { sleep } from "../lib/async.ts";
import type { OrderRequest } from "../lib/http_probes.ts";
import {
  type CancelAnswer,
  cancelUntilAnswered,
  type Placed,
  placeUntilAnswered,
} from "../lib/until_answered.ts";
import { pick, type Slot } from "./_scale_instances.ts";

/** The SKU 2 in 5 orders want one of, with too little stock for all of them. */
export const SCARCE_SKU = "chef-special";

const PLENTIFUL_SKUS = ["burger", "fries", "salad", "soda"];
/** Enough that no order is rejected for want of a plentiful SKU. */
const PLENTIFUL_STOCK = 100_000;

/** ORDER_DECISION_TIMEOUT of the scenario's order instances, in milliseconds. */
export const DECISION_TIMEOUT_MS = 3000;

/** How long one order may take to get its 202, across instances, in milliseconds. */
const PLACE_DEADLINE_MS = 30_000;

/** An order to place. */
export interface PlannedOrder {
  /** Its `Idempotency-Key`: a POST that died with its instance is sent again to the other one. */
  key: string;
  body: OrderRequest;
  wantsScarce: boolean;
  /** The student cancels it soon after its 202, through any order instance. */
  cancels: boolean;
}

/** What placing one order came to. */
export interface Placement extends Placed {
  planned: PlannedOrder;
  /** The slot that answered 202. */
  via?: string;
  /** The answer to its cancellation, if it was one of those cancelled. */
  cancel?: CancelAnswer;
}

/**
 * `count` orders: each a plentiful SKU, and 2 in 5 also one of the scarce SKU. Stock is taken in
 * SKU order, so for some the scarce SKU comes after a plentiful one that must be given back.
 */
export function planOrders(count: number): PlannedOrder[] {
  return Array.from({ length: count }, (_, i) => {
    const wantsScarce = i % 5 < 2;
    const items = [{ sku: PLENTIFUL_SKUS[i % PLENTIFUL_SKUS.length], qty: 1 + (i % 3) }];
    if (wantsScarce) items.push({ sku: SCARCE_SKU, qty: 1 });
    return {
      key: `scale-${i}`,
      body: { user_id: `student-${i % 97}`, items },
      wantsScarce,
      cancels: i % 8 === 3,
    };
  });
}

/** `INVENTORY_STOCK` for the scenario, with `scarceStock` of the scarce SKU. */
export function scaleStock(scarceStock: number): Record<string, number> {
  const stock: Record<string, number> = { [SCARCE_SKU]: scarceStock };
  for (const sku of PLENTIFUL_SKUS) stock[sku] = PLENTIFUL_STOCK;
  return stock;
}

/**
 * Places `planned` through `first`, and after a failure through whichever order instance runs
 * (see {@linkcode placeUntilAnswered}).
 */
export async function place(
  orderSlots: Slot[],
  planned: PlannedOrder,
  first: Slot,
): Promise<Placement> {
  let slot = first;
  let target: Slot | undefined;
  const placed = await placeUntilAnswered(
    () => {
      target = slot.current ? slot : orderSlots.find((s) => s.current);
      return target?.current?.url;
    },
    planned.body,
    {
      key: planned.key,
      deadlineMs: PLACE_DEADLINE_MS,
      afterFailure: () => slot = orderSlots.find((s) => s !== target) ?? target!,
    },
  );
  const placement = { planned, ...placed, ...(placed.orderId ? { via: target?.label } : {}) };
  if (!placed.orderId || !planned.cancels) return placement;
  await sleep(Math.random() * 1000);
  const cancel = await cancelUntilAnswered(
    () => {
      const running = orderSlots.filter((s) => s.current);
      return running.length > 0 ? pick(running).current?.url : undefined;
    },
    placed.orderId,
    { deadlineMs: PLACE_DEADLINE_MS },
  );
  return { ...placement, cancel };
}

/** Hands out the planned orders: to the stream in turn, and in bursts to an instance about to die. */
export interface Feed {
  /** Sends the next planned order to `slot`, or else to the next order instance in turn. */
  send(slot?: Slot): boolean;
  readonly sent: number;
  readonly total: number;
  readonly placements: Promise<Placement>[];
}

export function createFeed(orderSlots: Slot[], planned: PlannedOrder[]): Feed {
  let turn = 0;
  const placements: Promise<Placement>[] = [];
  return {
    total: planned.length,
    get sent() {
      return placements.length;
    },
    placements,
    send(slot) {
      if (placements.length >= planned.length) return false;
      const target = slot ?? orderSlots[turn++ % orderSlots.length];
      placements.push(place(orderSlots, planned[placements.length], target));
      return true;
    },
  };
}

/** Sends the planned orders evenly over `durationMs`, counting those that bursts took. */
export async function streamPlanned(
  feed: Feed,
  durationMs: number,
  halted: () => boolean,
): Promise<void> {
  const began = performance.now();
  while (feed.sent < feed.total && !halted()) {
    const due = Math.ceil(feed.total * Math.min(1, (performance.now() - began) / durationMs));
    while (feed.sent < due) feed.send();
    await sleep(10);
  }
}
