/**
 * The console's picture of the system, read again every second: each service's `/ready`, the
 * stock, orders per second, every queue's depth over the last minutes, the DLQs, the webhook
 * deliveries pending and failed, and the latest orders. One reading serves every open page; {@linkcode Live.subscribe} hands out each new one.
 * @module
 */
import type { Broker } from "../../../shared/broker.ts";
import { delay } from "../../../shared/delay.ts";
import { describeError, type Logger } from "../../../shared/log.ts";
import { QUEUES } from "../../../shared/topology.ts";
import type { BrokerTools } from "../broker_tools.ts";
import type { ManagementApi } from "../management_api.ts";
import { type ServiceName, SERVICES } from "../../../shared/topology.ts";
import { type DeadLetterQueue, type DeadLetterView, viewDeadLetters } from "./dead_letter_view.ts";
import { type DeliveryView, readDeliveries } from "./delivery_view.ts";
import { type LatestOrders, type OrderRow, watchLatestOrders } from "./latest_orders.ts";
import { countOrders, type CountsAt, type OrderCounts, ratesBetween } from "./order_rates.ts";
import { getJson, getText, type QueueDepth, readQueues } from "./probes.ts";
import { type Readiness, readReadiness, readService } from "./probes.ts";
import type { Services } from "./services.ts";

/** One service on the page. */
export interface ServiceState {
  name: ServiceName;
  /** `stopped` by the console, `starting` until it listens, else what `/ready` says. */
  state: Readiness["state"] | "stopped" | "starting";
  detail?: string;
}

/** Something a person did through the console, and who (the remote address). */
export interface Activity {
  at: string;
  who: string;
  what: string;
}

/** Queue depths at `t` (milliseconds since the epoch). */
export interface QueueSample {
  t: number;
  queues: QueueDepth[];
}

/** Orders per second at `t`. */
export interface RateSample {
  t: number;
  rates: OrderCounts;
}

/** Everything the page shows, as of `at`. */
export interface Snapshot {
  at: number;
  /** The oldest moment the charts show. */
  since: number;
  broker: { connected: boolean; error?: string };
  services: ServiceState[];
  /** Whether the page may stop and start services. */
  controls: boolean;
  stock?: Record<string, number>;
  rates?: OrderCounts;
  rateHistory: RateSample[];
  queueHistory: QueueSample[];
  deadLetters: readonly DeadLetterQueue[];
  /** Webhook deliveries pending and failed; undefined while notification does not tell. */
  deliveries?: DeliveryView;
  orders: readonly OrderRow[];
  activity: Activity[];
  /** What could not be read, by what. */
  problems: Record<string, string>;
}

/** Options for {@linkcode startLive}. */
export interface LiveOptions {
  /** The console's own connection to the vhost: to replay dead letters with confirms. */
  broker: Broker;
  /** The console's tools on the vhost: to browse the DLQs and tap new orders. */
  tools: BrokerTools;
  managementApi: ManagementApi;
  vhost: string;
  services: Services;
  log: Logger;
  /** Time between two readings, in milliseconds. @default {1000} */
  pollIntervalMs?: number;
  /** How far back the charts go at most, in milliseconds. @default {300000} */
  windowMs?: number;
  /** The bearer token the latest orders and the deliveries are read with, if the services want one. */
  token?: string;
}

/** The live picture; see {@linkcode startLive}. */
export interface Live {
  snapshot(): Snapshot;
  /** Calls `listener` with every new snapshot; returns how to stop. */
  subscribe(listener: (snapshot: Snapshot) => void): () => void;
  readonly orders: LatestOrders;
  readonly deadLetters: DeadLetterView;
  /** Records what someone did, for the page's activity list. */
  record(activity: Omit<Activity, "at">): void;
  /** Reads everything again now rather than at the next tick. */
  refreshNow(): void;
  stop(): Promise<void>;
}

/** The window over which orders per second are averaged, in milliseconds. */
const RATE_WINDOW_MS = 5_000;

/** Starts reading, once at once and then every `pollIntervalMs`. */
export function startLive(options: LiveOptions): Live {
  const { broker, tools, managementApi, vhost, services, log } = options;
  const { pollIntervalMs = 1_000, windowMs = 300_000 } = options;
  const orders = watchLatestOrders({ broker, tools }, { log, token: options.token });
  const deadLetters = viewDeadLetters({ broker, tools });
  const listeners = new Set<(snapshot: Snapshot) => void>();
  const counts: CountsAt[] = [];
  let current = emptySnapshot(services);
  let activity: Activity[] = [];
  const problems: Record<string, string> = {};
  let wake = new AbortController();
  const stopping = new AbortController();
  const startedAt = Date.now();

  /** Logs the first failure of each kind of reading and its recovery, not every tick's. */
  function note(what: string, error?: unknown): void {
    const had = problems[what];
    if (error === undefined) {
      if (had === undefined) return;
      delete problems[what];
      log.info("reads again", { what });
      return;
    }
    problems[what] = describeError(error);
    if (had === undefined) log.warn("cannot read", { what, error: problems[what] });
  }

  async function read<T>(what: string, reading: () => Promise<T>): Promise<T | undefined> {
    try {
      const value = await reading();
      note(what);
      return value;
    } catch (error) {
      note(what, error);
      return undefined;
    }
  }

  async function tick(): Promise<void> {
    const at = Date.now();
    // A console just started shows its first minute, then a window that grows to windowMs.
    const since = Math.max(at - windowMs, Math.min(startedAt, at - 60_000));
    const queues = await read("queues", () => readQueues(managementApi, vhost));
    const depths = new Map(queues?.map((queue) => [queue.name, queue.ready + queue.unacked]));
    const [serviceStates, stock, metrics, deliveries] = await Promise.all([
      Promise.all(SERVICES.map((name) => stateOf(name, services))),
      read("stock", () => readService(services.url("inventory"), "/stock", getJson)),
      read("order metrics", () => readService(services.url("order"), "/metrics", getText)),
      read(
        "webhook deliveries",
        () => readDeliveries(services.url("notification"), { token: options.token }),
      ),
      read("latest orders", () => orders.refresh((name) => services.url(name))),
      queues && read("dead letters", () => deadLetters.refresh(depths)),
    ]);
    if (metrics !== undefined) counts.push({ t: at, counts: countOrders(metrics) });
    while (counts.length > 1 && counts[0].t < at - RATE_WINDOW_MS) counts.shift();
    const rates = counts.length > 1 ? ratesBetween(counts[0], counts.at(-1)!) : undefined;
    current = {
      at,
      since,
      broker: { connected: broker.connected, error: broker.lastError },
      services: serviceStates,
      controls: services.control !== undefined,
      stock: (stock?.status === 200 ? stock.body : current.stock) as Snapshot["stock"],
      rates,
      rateHistory: [...within(current.rateHistory, since), ...(rates ? [{ t: at, rates }] : [])],
      queueHistory: [
        ...within(current.queueHistory, since),
        ...(queues ? [{ t: at, queues }] : []),
      ],
      deadLetters: deadLetters.queues,
      deliveries,
      orders: orders.rows,
      activity,
      problems: { ...problems },
    };
    for (const listener of listeners) listener(current);
  }

  const running = (async () => {
    while (!stopping.signal.aborted) {
      const started = Date.now();
      // A reading that fails as a whole (a panel that cannot render, say) must not end the loop.
      await tick().catch((error) =>
        log.error("cannot take a reading", { error: describeError(error) })
      );
      await delay(Math.max(0, pollIntervalMs - (Date.now() - started)), wake.signal);
      if (wake.signal.aborted) wake = new AbortController();
    }
  })();

  return {
    snapshot: () => current,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    orders,
    deadLetters,
    record(entry) {
      activity = [{ at: new Date().toISOString(), ...entry }, ...activity].slice(0, 8);
    },
    refreshNow: () => wake.abort(),
    async stop() {
      stopping.abort();
      wake.abort();
      await running;
      await orders.close();
    },
  };
}

async function stateOf(name: ServiceName, services: Services): Promise<ServiceState> {
  const url = services.url(name);
  if (url) return { name, ...await readReadiness(url) };
  const running = services.control?.running(name);
  return { name, state: running ? "starting" : "stopped" };
}

function within<T extends { t: number }>(samples: T[], since: number): T[] {
  const first = samples.findIndex((sample) => sample.t >= since);
  return first === -1 ? [] : samples.slice(first);
}

function emptySnapshot(services: Services): Snapshot {
  const at = Date.now();
  return {
    at,
    since: at,
    broker: { connected: false },
    services: SERVICES.map((name) => ({ name, state: "starting" })),
    controls: services.control !== undefined,
    rateHistory: [],
    queueHistory: [],
    deadLetters: QUEUES.map((queue) => ({ queue, depth: 0, letters: [] })),
    orders: [],
    activity: [],
    problems: {},
  };
}
