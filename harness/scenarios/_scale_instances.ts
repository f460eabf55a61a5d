/**
 * The instances of the scale-out scenario (`scale.ts`): a slot per process of each service, and
 * the faults made to them: SIGKILLs and restarts one at a time, and a stop of every inventory
 * instance past the decision timeout. Also the stock watched all the while.
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { sleep, waitFor } from "../lib/async.ts";
import { round } from "../lib/format.ts";
import type { Report } from "../lib/scenario.ts";
import { type RunningService, type ServiceName, SERVICES } from "../lib/service_process.ts";
import type { Stack } from "../lib/stack.ts";
import { DECISION_TIMEOUT_MS, type Feed, SCARCE_SKU } from "./_scale_orders.ts";

/** How many processes of each service run side by side. */
export const INSTANCES: Record<ServiceName, number> = { order: 2, inventory: 3, notification: 2 };

/** How long a killed instance stays down before its restart, in milliseconds. */
const DOWN_MS = { min: 300, max: 900 };

/** Orders sent at once to an order instance that is about to be killed. */
const BURST = 20;

/** The order service's outbox on PostgreSQL, in the schema `shared/store.ts` gives the service. */
const ORDER_OUTBOX = "order_service.outbox";

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

/** The slots of every service: the stack's own instance first, then the extra ones, started now. */
export async function startSlots(stack: Stack): Promise<Record<ServiceName, Slot[]>> {
  const extras = SERVICES.flatMap((service) =>
    Array.from({ length: INSTANCES[service] - 1 }, () => ({ service }))
  );
  // Every start settles before a failure is thrown, so that closing the stack stops them all.
  const starts = await Promise.allSettled(
    extras.map(({ service }) => stack.startInstance(service)),
  );
  const failed = starts.find((start) => start.status === "rejected");
  if (failed) throw failed.reason;
  const slots = {} as Record<ServiceName, Slot[]>;
  for (const service of SERVICES) {
    const runs = [
      stack.services[service]!,
      ...starts.flatMap((start, i) =>
        start.status === "fulfilled" && extras[i].service === service ? [start.value] : []
      ),
    ];
    slots[service] = runs.map((run, i) => ({
      service,
      label: `${service}-${i + 1}`,
      primary: i === 0,
      current: run,
      runs: [run],
    }));
  }
  return slots;
}

export interface Faults {
  stack: Stack;
  report: Report;
  slots: Record<ServiceName, Slot[]>;
  feed: Feed;
  db: pg.Client;
  kills: Kill[];
  /** When the scenario began, from `performance.now()`. */
  began: number;
  killIntervalMs: number;
  /** Set while every inventory instance is stopped on purpose: then no inventory is killed. */
  inventoryOutage: boolean;
}

/**
 * Kills one instance at a time, and restarts it, until every order was sent: first one of each
 * service, then any. One at a time, so each service always has an instance running.
 */
export async function killAndRestartLoop(chaos: Faults): Promise<void> {
  const { slots, feed, kills, killIntervalMs } = chaos;
  const first: ServiceName[] = ["order", "inventory", "notification"];
  let lastKillAt = performance.now();
  while (true) {
    await sleep(
      Math.max(0, lastKillAt + killIntervalMs * (0.75 + Math.random() / 2) - performance.now()),
    );
    if (feed.sent >= feed.total) return;
    lastKillAt = performance.now();
    let service = first[kills.length] ?? pick(SERVICES);
    if (service === "inventory" && chaos.inventoryOutage) service = pick(["order", "notification"]);
    kills.push(await killAndRestart(chaos, pick(slots[service])));
  }
}

/**
 * Stops every inventory instance for longer than the decision timeout, then starts them again:
 * the orders placed meanwhile expire on whichever order instance sweeps first, and their
 * `OrderPlaced` and `OrderCancelled` meet at inventory in either order.
 */
export async function stopInventoryPastTimeout(chaos: Faults): Promise<void> {
  const { stack, report, slots } = chaos;
  const downMs = DECISION_TIMEOUT_MS + 2000;
  chaos.inventoryOutage = true;
  // An inventory instance being killed and restarted just now comes back first.
  await waitFor(
    "every inventory instance to run",
    () => slots.inventory.every((slot) => slot.current),
    { timeoutMs: 30_000 },
  );
  await Promise.all(slots.inventory.map(async (slot) => {
    const victim = slot.current!;
    slot.current = undefined;
    await (slot.primary ? stack.stop("inventory") : victim.stop());
  }));
  report.step(`stopped all ${slots.inventory.length} inventory instances for ${downMs / 1000} s`);
  await sleep(downMs);
  await Promise.all(slots.inventory.map(async (slot) => {
    const restarted = slot.primary
      ? await stack.start("inventory")
      : await stack.startInstance("inventory");
    slot.current = restarted;
    slot.runs.push(restarted);
  }));
  chaos.inventoryOutage = false;
  report.step("started the inventory instances again");
}

async function killAndRestart(chaos: Faults, slot: Slot): Promise<Kill> {
  const { stack, report, feed, db, began } = chaos;
  const victim = slot.current!;
  let burst = 0;
  if (slot.service === "order") {
    const before = acceptedBy(victim).length;
    while (burst < BURST && feed.send(slot)) burst++;
    // Killed while it takes the burst: orders are committing and its relay is publishing them.
    await waitFor(
      `${slot.label} to accept some of a burst of ${burst} orders`,
      () => acceptedBy(victim).length >= before + Math.min(2, burst),
      { timeoutMs: 10_000, intervalMs: 1 },
    );
  }
  const atMs = Date.now();
  const atS = round((performance.now() - began) / 1000, 1);
  slot.current = undefined;
  const code = slot.primary
    ? await stack.stop(slot.service, "SIGKILL")
    : await victim.stop("SIGKILL");
  const accepted = acceptedBy(victim);
  const left = slot.service === "order" ? await inOutbox(db, accepted) : [];
  const during = burst ? `, amid a burst of ${burst} orders sent to it` : "";
  const outbox = slot.service === "order"
    ? `; ${left.length} of the ${accepted.length} orders it accepted still in the outbox`
    : "";
  report.step(`SIGKILL ${slot.label} (pid ${victim.pid}${during}): exit code ${code}${outbox}`);
  if (left.length > 0) {
    const peer = chaos.slots.order.find((s) => s !== slot)!.label;
    const waited = performance.now();
    await waitFor(
      `${peer} to publish the outbox rows ${slot.label} left`,
      async () => (await inOutbox(db, left)).length === 0,
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    report.step(
      `${peer}'s relay published those ${left.length} (confirmed and deleted) in ${
        round((performance.now() - waited) / 1000, 2)
      } s, with ${slot.label} still down`,
    );
  }
  await sleep(
    Math.max(0, atMs + DOWN_MS.min + Math.random() * (DOWN_MS.max - DOWN_MS.min) - Date.now()),
  );
  const restarted = slot.primary
    ? await stack.start(slot.service)
    : await stack.startInstance(slot.service);
  slot.current = restarted;
  slot.runs.push(restarted);
  const downS = round((Date.now() - atMs) / 1000, 1);
  report.step(`restarted ${slot.label} (pid ${restarted.pid}) after ${downS} s down`);
  return { label: slot.label, service: slot.service, atMs, atS, downS, leftInOutbox: left };
}

/** The order ids an order process logged as accepted (committed with their `OrderPlaced`). */
function acceptedBy(run: RunningService): string[] {
  return run.logs.filter((l) => l.msg === "accepted order").map((l) => String(l.order_id));
}

/** Which of `orderIds` still have their `OrderPlaced` in the outbox: not yet confirmed. */
async function inOutbox(db: pg.Client, orderIds: string[]): Promise<string[]> {
  const { rows } = await db.query<{ correlation_id: string }>(
    `SELECT correlation_id FROM ${ORDER_OUTBOX} WHERE correlation_id = ANY($1)`,
    [orderIds],
  );
  return rows.map((row) => row.correlation_id);
}

/**
 * Reads the stock from a running inventory instance every 100 ms, keeping the lowest level seen
 * per SKU: the CHECK constraint would refuse a negative one, and this would show it.
 */
export function watchStock(
  inventory: Slot[],
): { lowest: Record<string, number>; readonly samples: number; stop(): Promise<void> } {
  const lowest: Record<string, number> = {};
  let samples = 0;
  let stopped = false;
  async function sample(): Promise<void> {
    while (!stopped) {
      const running = inventory.filter((s) => s.current);
      const url = running.length ? pick(running).current!.url : undefined;
      try {
        const response = url
          ? await fetch(`${url}/stock`, { signal: AbortSignal.timeout(2000) })
          : undefined;
        const stock = await response?.json();
        // A killed instance's port may be another service's by now: only a stock answer counts.
        if (response?.ok && typeof stock?.[SCARCE_SKU] === "number") {
          samples++;
          for (const [sku, qty] of Object.entries(stock as Record<string, number>)) {
            lowest[sku] = Math.min(lowest[sku] ?? qty, qty);
          }
        }
      } catch {
        // The instance was killed under the request; the next sample asks another.
      }
      await sleep(100);
    }
  }
  const running = sample();
  return {
    lowest,
    get samples() {
      return samples;
    },
    async stop() {
      stopped = true;
      await running;
    },
  };
}

/** A running instance of `slots`' service, chosen by `id` so that requests spread over all. */
export function urlOf(slots: Slot[], id: string): string {
  let hash = 0;
  for (const char of id) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const running = slots.filter((s) => s.current);
  return running[hash % running.length].current!.url;
}

export function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}
