/**
 * What the scale-out scenario (`scale.ts`) checks once the stream is over: every order decided
 * once on whichever instance, its effects, the stock, the events on the wire, the DLQs, and the
 * figures per instance.
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import type { WebhookReceiver } from "../lib/webhook_receiver.ts";
import { expectDelivered } from "../lib/webhook_checks.ts";
import { mapLimit, sleep, waitFor } from "../lib/async.ts";
import { expectDeadLettersEmpty, waitQueuesEmpty } from "../lib/broker_probes.ts";
import type { Tap } from "../ops/broker_tools.ts";
import { countEffects, notificationSent } from "../lib/effects.ts";
import { round, tally } from "../lib/format.ts";
import { getJson } from "../lib/http_probes.ts";
import {
  checkCancelAnswers,
  checkLifecycle,
  hasSettled,
  type SettledOrder,
  toSettledOrder,
} from "../lib/order_lifecycle_checks.ts";
import type { Report } from "../lib/scenario.ts";
import { type ServiceName, SERVICES } from "../lib/service_process.ts";
import type { Stack } from "../lib/stack.ts";
import { type Kill, type Slot, urlOf } from "./_scale_instances.ts";
import { DECISION_TIMEOUT_MS, type Placement, scaleStock, SCARCE_SKU } from "./_scale_orders.ts";

/** A republished event must have been written at most this long before a kill, in milliseconds. */
const REPUBLISH_WINDOW_MS = 5_000;

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
  /** The webhook receiver every notification instance delivers to. */
  receiver: WebhookReceiver;
}

/** What one placed order led to. */
interface Effects extends SettledOrder {
  placement: Placement;
  /** Why it was rejected or expired. */
  reason?: string;
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
    return (await effectsOf(run, accepted)).every(hasSettled);
  }, { timeoutMs: 30_000, intervalMs: 200 });
  // A copy still on its way would be counted after the check: let the queues run empty first.
  await waitQueuesEmpty(stack);

  const effects = await effectsOf(run, accepted);
  checkEffects(run, effects, (await getJson(`${slots.inventory[0].current!.url}/stock`)).body);
  checkCancelAnswers(report, accepted.flatMap((p) => p.cancel ? [p.cancel] : []));
  await checkDeliveries(run, effects);
  const republished = checkWire(run, ids);
  await expectDeadLettersEmpty(run.stack, run.report);
  recordFigures(run, effects, {
    decidedS,
    retried,
    leftInOutbox: leftInOutbox.length,
    republished,
  });
}

/** Every notification recorded, by either notification instance, reached the webhook under one id. */
async function checkDeliveries(run: ScaleRun, effects: Effects[]): Promise<void> {
  const recorded = new Set(
    effects.flatMap((e) => e.notifications.map((kind) => `${e.orderId} ${kind}`)),
  );
  await expectDelivered(run.report, run.receiver, { recorded, timeoutMs: 60_000 });
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

/** What each of `placements` led to, asking the instances of each service in turn. */
async function effectsOf(run: ScaleRun, placements: Placement[]): Promise<Effects[]> {
  const found = await countEffects(run.stack, placements.map((p) => p.orderId!), {
    urlOf: (service, orderId) => urlOf(run.slots[service], orderId),
  });
  return found.map((e, i) => ({
    ...toSettledOrder(e),
    placement: placements[i],
    reason: e.reason,
  }));
}

function checkEffects(run: ScaleRun, effects: Effects[], onHand: Record<string, number>): void {
  const { report, scarceStock, lowestStock } = run;
  const initial = scaleStock(scarceStock);
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
    perSlot(slots.notification, (l) => notificationSent(l) !== undefined),
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

/** Notifications sent (logged) per order, over every notification process. */
function notificationLines(slots: Slot[]): Map<string, number> {
  const sent = new Map<string, number>();
  for (const line of slots.flatMap((s) => s.runs.flatMap((r) => r.logs))) {
    const orderId = notificationSent(line)?.orderId;
    if (orderId) sent.set(orderId, (sent.get(orderId) ?? 0) + 1);
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

/**
 * Deadlocks PostgreSQL detected in the scenario's database: consumers of one queue lock rows in
 * different orders, and each one costs a transaction that has to run again.
 */
export async function deadlocks(db: pg.Client): Promise<number> {
  // The statistics of a backend reach the view within a second of its last transaction.
  await sleep(1000);
  const { rows } = await db.query<{ deadlocks: string }>(
    "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
  );
  return Number(rows[0]?.deadlocks ?? 0);
}
