/**
 * The orders of the scale-out scenario (`scale.ts`), how each is placed so that it survives the
 * death of the order instance it was sent to, and what is checked once the stream is over.
 * @module
 */
import {
  type RunningService,
  type ServiceName,
  SERVICES,
  type Stack,
  waitFor,
} from "../lib/stack.ts";
import {
  type CancelAnswer,
  cancelUntilAnswered,
  expectDeadLettersEmpty,
  mapLimit,
  type OrderRequest,
  type Placed,
  placeUntilAnswered,
  type Report,
  request,
  round,
  tally,
} from "../lib/steps.ts";
import type { Tap } from "../lib/broker_tools.ts";
import { QUEUES } from "../../shared/topology.ts";
import {
  checkCancelAnswers,
  checkLifecycle,
  hasSettled,
  type SettledOrder,
} from "../lib/lifecycle_checks.ts";

/** The SKU 2 in 5 orders want one of, with too little stock for all of them. */
export const SCARCE_SKU = "chef-special";
const PLENTIFUL_SKUS = ["burger", "fries", "salad", "soda"];
/** Enough that no order is rejected for want of a plentiful SKU. */
const PLENTIFUL_STOCK = 100_000;

/** How long one order may take to get its 202, across instances, in milliseconds. */
const PLACE_DEADLINE_MS = 30_000;

/** ORDER_DECISION_TIMEOUT of the scenario's order instances, in milliseconds. */
export const DECISION_TIMEOUT_MS = 3000;

/** A republished event must have been written at most this long before a kill, in milliseconds. */
const REPUBLISH_WINDOW_MS = 5_000;

/** One place a service runs in: its process, replaced by a new one after each kill. */
export interface Slot {
  service: ServiceName;
  /** `inventory-2`, say. */
  label: string;
  /** The stack's own instance of the service, which `stack.url()` and `stack.stop()` reach. */
  primary: boolean;
  /** The running process; undefined while it is killed. */
  current?: RunningService;
  /** Every process that has filled the slot, for their logs. */
  runs: RunningService[];
}

/** A SIGKILL and the restart after it. */
export interface Kill {
  label: string;
  service: ServiceName;
  /** When, in milliseconds since the epoch: republished events were written before it. */
  atMs: number;
  /** When, in seconds since the scenario began. */
  atS: number;
  downS: number;
  /** Orders the killed order instance accepted whose `OrderPlaced` was still in the outbox. */
  leftInOutbox: string[];
}

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

/** `INVENTORY_STOCK` for the scenario. */
export function stockEnv(scarceStock: number): string {
  return [
    `${SCARCE_SKU}=${scarceStock}`,
    ...PLENTIFUL_SKUS.map((sku) => `${sku}=${PLENTIFUL_STOCK}`),
  ]
    .join(",");
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
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 1000));
  const cancel = await cancelUntilAnswered(
    () => {
      const running = orderSlots.filter((s) => s.current);
      return running[Math.floor(Math.random() * running.length)]?.current?.url;
    },
    placed.orderId,
    { deadlineMs: PLACE_DEADLINE_MS },
  );
  return { ...placement, cancel };
}

/** What the scenario collected, for {@linkcode verifyScale}. */
export interface ScaleRun {
  stack: Stack;
  report: Report;
  slots: Record<ServiceName, Slot[]>;
  placements: Placement[];
  kills: Kill[];
  scarceStock: number;
  /** Taps opened before the first order: the outcomes, and `OrderPlaced`. */
  taps: { outcomes: Tap; placed: Tap };
  /** The lowest stock level seen per SKU while the stream ran. */
  lowestStock: Record<string, number>;
  stockSamples: number;
  /** Seconds from the first order to the last 202. */
  streamS: number;
}

interface Effects extends SettledOrder {
  orderId: string;
  placement: Placement;
  status?: string;
  reason?: string;
  reservation?: { status: string; items: Array<{ sku: string; qty: number }> };
  notifications: string[];
  createdAt?: string;
  updatedAt?: string;
}

/** Events that came more than once on the wire (same `event_id`). */
interface Republished {
  orderPlaced: number;
  outcomes: number;
}

/** One event on a tap, with how many copies of it came. */
interface Tapped {
  orderId: string;
  copies: number;
  createdAtMs: number;
}

/**
 * Waits until every accepted order is decided and notified and the queues are empty, then checks
 * each order's effects, the stock, the events on the wire and the DLQs, and records the figures.
 */
export async function verifyScale(run: ScaleRun): Promise<void> {
  const { stack, report, slots, placements, kills } = run;
  const accepted = placements.filter((p) => p.orderId !== undefined);
  const failed = placements.filter((p) => p.orderId === undefined);
  const retried = accepted.filter((p) => p.attempts > 1).length;
  report.step(
    `${accepted.length} of ${placements.length} orders accepted with 202 in ${run.streamS} s; ` +
      `${retried} of them sent again with the same Idempotency-Key after their instance died`,
  );
  report.expect(
    failed.length === 0,
    "a 202 for every order from one order instance or the other",
    `${failed.length} without one, e.g. ${failed[0]?.error}`,
  );
  const ids = accepted.map((p) => p.orderId!);
  report.expect(new Set(ids).size === ids.length, "a distinct order per order", "repeated ids");
  const leftInOutbox = kills.flatMap((k) => k.leftInOutbox);
  report.expect(
    leftInOutbox.every((id) => ids.includes(id)),
    "every order a killed instance left in the outbox to be accepted",
    "some not accepted",
  );

  const lastAccepted = performance.now();
  const decided = await waitDecided(slots, ids);
  const decidedS = round((performance.now() - lastAccepted) / 1000, 2);
  report.step(
    `every order decided ${decidedS} s after the stream: ${tally([...decided.values()])}`,
  );
  await waitFor("every order settled, and both its events on the taps", async () => {
    const outcomes = readTap(run.taps.outcomes);
    const placed = readTap(run.taps.placed);
    if (![outcomes, placed].every((tapped) => ids.every((id) => tapped.byOrder.has(id)))) {
      return false;
    }
    return (await mapLimit(accepted, 16, (p) => effectsOf(slots, p))).every(hasSettled);
  }, { timeoutMs: 30_000, intervalMs: 200 });
  // A copy still on its way would be counted after the check: let the queues run empty first.
  await waitFor("the queues to be empty", async () => {
    const depths = await Promise.all(QUEUES.map((q) => stack.tools.queueDepth(q)));
    return depths.every((d) => d === 0);
  });

  const effects = await mapLimit(accepted, 16, (p) => effectsOf(slots, p));
  checkEffects(run, effects, (await getJson(`${slots.inventory[0].current!.url}/stock`)).body);
  checkCancelAnswers(report, accepted.flatMap((p) => p.cancel ? [p.cancel] : []));
  const republished = checkWire(run, ids);
  await expectDeadLettersEmpty(run.stack, run.report);
  recordFigures(run, effects, {
    decidedS,
    retried,
    leftInOutbox: leftInOutbox.length,
    republished,
  });
}

/** Polls the undecided orders, spread over both order instances, until none is PENDING. */
async function waitDecided(
  slots: Record<ServiceName, Slot[]>,
  ids: string[],
): Promise<Map<string, string>> {
  const decided = new Map<string, string>();
  await waitFor(`all ${ids.length} orders to be decided`, async () => {
    const pending = ids.filter((id) => !decided.has(id));
    await mapLimit(pending, 16, async (id) => {
      const { body } = await getJson(`${urlOf(slots.order, id)}/orders/${id}`);
      if (body?.status && body.status !== "PENDING") decided.set(id, body.status);
    });
    return decided.size === ids.length;
  }, { timeoutMs: 60_000, intervalMs: 200 });
  return decided;
}

async function effectsOf(
  slots: Record<ServiceName, Slot[]>,
  placement: Placement,
): Promise<Effects> {
  const id = placement.orderId!;
  const [order, reservation, notifications] = await Promise.all([
    getJson(`${urlOf(slots.order, id)}/orders/${id}`),
    getJson(`${urlOf(slots.inventory, id)}/reservations/${id}`),
    notificationsOf(slots, id),
  ]);
  return {
    orderId: id,
    placement,
    status: order.body?.status,
    reason: order.body?.reason,
    createdAt: order.body?.created_at,
    updatedAt: order.body?.updated_at,
    reservation: reservation.status === 200 ? reservation.body : undefined,
    notifications: notifications.map((n: { kind: string }) => n.kind),
  };
}

async function notificationsOf(
  slots: Record<ServiceName, Slot[]>,
  id: string,
): Promise<Array<{ kind: string }>> {
  const { body } = await getJson(`${urlOf(slots.notification, id)}/notifications?order_id=${id}`);
  return Array.isArray(body) ? body : [];
}

function checkEffects(run: ScaleRun, effects: Effects[], onHand: Record<string, number>): void {
  const { report, scarceStock, lowestStock } = run;
  const initial: Record<string, number> = { [SCARCE_SKU]: scarceStock };
  for (const sku of PLENTIFUL_SKUS) initial[sku] = PLENTIFUL_STOCK;
  const counts = checkLifecycle(report, effects, {
    stock: { initial, onHand },
    decisionTimeoutMs: DECISION_TIMEOUT_MS,
    expiryLateMs: 5000,
  });
  report.figure("told_outcome_then_called_off", counts.outcomeThenCalledOff);
  report.figure("told_outcome_then_expired", counts.outcomeThenExpired);
  report.step(
    `lowest stock over ${run.stockSamples} samples: ${
      Object.keys(initial).map((sku) => `${sku} ${lowestStock[sku]}`).join(", ")
    }`,
  );
  for (const sku of Object.keys(initial)) {
    report.expect(
      (lowestStock[sku] ?? 0) >= 0,
      `${sku} never below 0`,
      `${lowestStock[sku]} at one sample`,
    );
  }
  const rejected = effects.filter((e) => e.status === "REJECTED");
  report.expect(
    rejected.every((e) => e.placement.planned.wantsScarce && e.reason?.includes(SCARCE_SKU)),
    `only orders of ${SCARCE_SKU} rejected, for want of it`,
    tally(rejected.map((e) => e.reason)),
  );
  const sent = notificationLines(run.slots.notification);
  const sentPerOrder = effects.map((e) => sent.get(e.orderId) ?? 0);
  report.expect(
    effects.every((e) => (sent.get(e.orderId) ?? 0) <= e.notifications.length),
    "at most one notification sent (logged) per order and kind",
    tally(sentPerOrder),
  );
}

/**
 * One `OrderPlaced` and one outcome event per order on the taps. A copy of the same event is the
 * at-least-once publish of a relay killed between the broker's confirm and its outbox delete: it
 * must come from a row written shortly before a kill of its publisher, never in normal operation.
 */
function checkWire(run: ScaleRun, ids: string[]): Republished {
  const { report, kills } = run;
  const republished: Republished = { orderPlaced: 0, outcomes: 0 };
  for (
    const [what, tap, publisher] of [
      ["OrderPlaced", run.taps.placed, "order"],
      ["outcome event", run.taps.outcomes, "inventory"],
    ] as const
  ) {
    const tapped = readTap(tap);
    const perOrder = ids.map((id) => tapped.byOrder.get(id)?.size ?? 0);
    report.step(`distinct ${what}s per order (count×value): ${tally(perOrder)}`);
    report.expect(perOrder.every((n) => n === 1), `exactly 1 ${what} per order`, tally(perOrder));
    const copies = [...tapped.events.values()].filter((e) => e.copies > 1);
    const unexplained = copies.filter((e) =>
      !kills.some((k) =>
        k.service === publisher && k.atMs >= e.createdAtMs - 1000 &&
        k.atMs <= e.createdAtMs + REPUBLISH_WINDOW_MS
      )
    );
    report.step(
      `${what}s published more than once: ${copies.length} (all written just before a SIGKILL of ${publisher}: ${
        unexplained.length === 0 ? "yes" : "no"
      })`,
    );
    report.expect(
      unexplained.length === 0,
      `${what}s published twice only after a ${publisher} instance was killed`,
      `${unexplained.length} copies without a kill, e.g. of order ${unexplained[0]?.orderId}`,
    );
    republished[publisher === "order" ? "orderPlaced" : "outcomes"] = copies.length;
  }
  return republished;
}

function recordFigures(
  run: ScaleRun,
  effects: Effects[],
  extra: { decidedS: number; retried: number; leftInOutbox: number; republished: Republished },
): void {
  const { report, slots, kills } = run;
  const count = (status: string) => effects.filter((e) => e.status === status).length;
  const logs = (service: ServiceName) =>
    slots[service].flatMap((s) => s.runs.flatMap((r) => r.logs));
  const lines = (msg: string) => SERVICES.flatMap(logs).filter((l) => l.msg === msg).length;
  const sent = notificationLines(slots.notification);
  report.figure("orders", run.placements.length);
  report.figure("accepted", effects.length);
  for (const status of ["CONFIRMED", "REJECTED", "CANCELLED", "EXPIRED"]) {
    report.figure(status.toLowerCase(), count(status));
  }
  report.figure("cancellations_asked", effects.filter((e) => e.placement.cancel).length);
  report.figure("stock_released", lines("released stock of a cancelled order"));
  report.figure("cancellations_before_order", lines("remembered a cancellation before its order"));
  report.figure("orders_expired_by_sweeps", lines("expired order"));
  report.figure("scarce_stock", run.scarceStock);
  report.figure("scarce_wanted", effects.filter((e) => e.placement.planned.wantsScarce).length);
  report.figure("instances", SERVICES.map((s) => `${slots[s].length} ${s}`).join(", "));
  report.figure(
    "accepted_per_order_instance",
    slots.order.map((s) =>
      `${s.label}=${effects.filter((e) => e.placement.via === s.label).length}`
    )
      .join(" "),
  );
  report.figure(
    "handled_per_inventory_instance",
    perSlot(slots.inventory, (l) => l.msg === "reserved stock" || l.msg === "reservation failed"),
  );
  report.figure(
    "notified_per_notification_instance",
    perSlot(slots.notification, (l) => isNotification(l)),
  );
  report.figure("kills", kills.length);
  report.figure(
    "kill_timeline",
    kills.map((k) => `${k.atS}s ${k.label} (${k.downS}s down)`).join(", "),
  );
  report.figure("posts_sent_again", extra.retried);
  report.figure("outbox_rows_left_by_killed_order", extra.leftInOutbox);
  report.figure("order_placed_republished", extra.republished.orderPlaced);
  report.figure("outcomes_republished", extra.republished.outcomes);
  report.figure("inbox_duplicates_skipped", lines("skipped duplicate"));
  report.figure("transient_retries", lines("handling failed, retrying later"));
  const warnings = SERVICES.flatMap(logs).filter((l) => l.level === "warn" || l.level === "error");
  report.step(
    `warnings and errors logged by the services: ${
      tally(warnings.map((l) =>
        `${l.level} ${l.msg}${l.error ? ` (${String(l.error).slice(0, 100)})` : ""}`
      ))
    }`,
  );
  report.figure(
    "notification_lines_lost_to_kills",
    effects.filter((e) => !sent.has(e.orderId)).length,
  );
  report.figure("lowest_stock_seen", Math.min(...Object.values(run.lowestStock)));
  report.figure("stream_s", run.streamS);
  report.figure("orders_per_s", round(effects.length / run.streamS, 1));
  report.figure("decided_after_stream_s", extra.decidedS);
  report.summary(
    `${effects.length} orders over ${slots.order.length} order APIs (${
      tally(effects.map((e) => e.status))
    }), none PENDING, each with exactly 1 reservation and 1 outcome event; stock conserved, ` +
      "held only by CONFIRMED orders and never negative; each status told at most once, the " +
      `last the final one; ${kills.length} SIGKILLs ` +
      `(${tally(kills.map((k) => k.service))}); ${extra.leftInOutbox} orders left in the outbox ` +
      `by a killed order instance published by the other; DLQs empty`,
  );
}

/** `order-1=150 order-2=150`: the log lines of each slot, over all its processes, that `match`. */
function perSlot(slots: Slot[], match: (line: Record<string, unknown>) => boolean): string {
  return slots.map((s) => `${s.label}=${s.runs.flatMap((r) => r.logs).filter(match).length}`)
    .join(" ");
}

/** A notification service's line that is the message sent to the student. */
function isNotification(line: Record<string, unknown>): boolean {
  return typeof line.order_id === "string" && typeof line.msg === "string" &&
    line.msg.startsWith(`order ${line.order_id} `);
}

/** Notifications sent (logged) per order, over every notification process. */
function notificationLines(slots: Slot[]): Map<string, number> {
  const sent = new Map<string, number>();
  for (const line of slots.flatMap((s) => s.runs.flatMap((r) => r.logs))) {
    if (isNotification(line)) {
      sent.set(String(line.order_id), (sent.get(String(line.order_id)) ?? 0) + 1);
    }
  }
  return sent;
}

function readTap(tap: Tap): { events: Map<string, Tapped>; byOrder: Map<string, Set<string>> } {
  const events = new Map<string, Tapped>();
  const byOrder = new Map<string, Set<string>>();
  for (const message of tap.messages) {
    const eventId = message.messageId ?? "";
    const orderId = message.correlationId ?? "";
    const seen = events.get(eventId);
    if (seen) {
      seen.copies++;
      continue;
    }
    let createdAtMs = NaN;
    try {
      createdAtMs = Date.parse(JSON.parse(new TextDecoder().decode(message.body)).created_at);
    } catch {
      // Not JSON: it cannot be explained by a kill, and the check says so.
    }
    events.set(eventId, { orderId, copies: 1, createdAtMs });
    byOrder.set(orderId, (byOrder.get(orderId) ?? new Set()).add(eventId));
  }
  return { events, byOrder };
}

/** A running instance of `slots`' service, chosen by `id` so that requests spread over all. */
function urlOf(slots: Slot[], id: string): string {
  let hash = 0;
  for (const char of id) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const running = slots.filter((s) => s.current);
  return running[hash % running.length].current!.url;
}

// deno-lint-ignore no-explicit-any -- the checks look at the fields they use
async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await request(url);
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    return { status: response.status, body: undefined };
  }
}
