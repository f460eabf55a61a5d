/**
 * A service's program: what every service runs the same way — its configuration and log, its
 * store, the broker, the outage watch, the outbox relay, its consumers, retention and the HTTP
 * server — started in one order around what makes the service itself, and stopped in one order.
 *
 * @example
 * ```ts
 * if (import.meta.main) {
 *   await runService({
 *     name: "inventory",
 *     migrations: INVENTORY_MIGRATIONS,
 *     consumers: ({ log }) => [
 *       consumer({ queue: Queue.orderPlaced, schema: orderPlacedSchema, handle: handleOrderPlaced(log) }),
 *     ],
 *     routes: ({ store }) => inventoryRoutes(store),
 *   });
 * }
 * ```
 * @module
 */
import type { Hono } from "hono";
import {
  type Config,
  loadConfig,
  type ServiceVariables,
  type ValuesOf,
  type Variables,
} from "./config.ts";
import { createLogger, type Logger } from "./log.ts";
import { type Migration, openStore, type Store } from "./store.ts";
import { type Broker, connectBroker, type Consumer } from "./broker.ts";
import { type ConsumerOptions, startConsumer } from "./consumer.ts";
import { type OutageWatch, watchOutages } from "./outage.ts";
import { startOutboxRelay } from "./relay.ts";
import { inboxRetention } from "./inbox.ts";
import { type RetentionRule, startRetention } from "./retention.ts";
import { serveHttp, serviceApp } from "./http.ts";
import { onShutdown } from "./shutdown.ts";
import type { EventType, ServiceName } from "./topology.ts";
import { SERVICE_ACCESS } from "./topology.ts";

/** What a service's own parts are built from: `config` has its own variables' values too. */
export interface ServiceContext<V extends Variables = Variables> {
  config: Config & ValuesOf<V>;
  log: Logger;
  store: Store;
  broker: Broker;
  /** The store's outages, which pause the consumers, the relay and any task that waits on them. */
  outages: OutageWatch;
}

/** One consumer of a service, as {@linkcode consumer} makes it. */
export interface ConsumerDefinition {
  start(context: ServiceContext): Consumer;
}

/** What a service's consumer is made of; the rest is the same for every consumer. */
export type HandlerOptions<T extends { event_id: string; event_type: EventType }> = Pick<
  ConsumerOptions<T>,
  "queue" | "schema" | "handle"
>;

/**
 * A consumer of `options.queue`: its events checked by `options.schema` and given to
 * `options.handle`; retries, fault injection and pauses come from the service.
 */
export function consumer<T extends { event_id: string; event_type: EventType }>(
  options: HandlerOptions<T>,
): ConsumerDefinition {
  return {
    start: ({ config, log, store, broker, outages }) =>
      startConsumer(broker, store, {
        ...options,
        log,
        outages,
        retryDelaysMs: config.retryDelaysMs,
        faultRate: config.faultTransientRate,
      }),
  };
}

/** A part a service runs in the background until it stops, such as expiring overdue orders. */
export interface BackgroundTask {
  stop(): Promise<void>;
}

/** What makes a service itself. */
export interface ServiceDefinition<V extends Variables> {
  name: ServiceName;
  /** What it reads from the environment besides what every service reads. */
  config?: ServiceVariables<V>;
  /** Its tables, in order, including the inbox's and outbox's it uses. */
  migrations: Migration[];
  /** Runs once the store is open, before anything is consumed or served: seeding stock. */
  setUp?(context: Omit<ServiceContext<V>, "broker" | "outages">): Promise<void>;
  /** Its consumers, one per queue it consumes. */
  consumers(context: ServiceContext<V>): ConsumerDefinition[];
  /** Its tasks besides consuming and relaying, started after its consumers. */
  tasks?(context: ServiceContext<V>): BackgroundTask[];
  /** What it deletes when old, besides the inbox's handled events. */
  retention?(config: Config & ValuesOf<V>): RetentionRule[];
  /** Its own HTTP routes; `/health`, `/ready` and `/metrics` are added to them. */
  routes(context: ServiceContext<V>): Hono;
  /** Deletes the queues an earlier version consumed that this one's consumers replace. */
  retiresQueues?: boolean;
}

/**
 * Runs the service `definition` until SIGINT or SIGTERM, then stops it: first the HTTP server (no
 * new work comes in), then the consumers and tasks (no new effects), the relay (what was committed
 * stays in the outbox for the next start), retention, the outage watch, the broker and the store.
 */
export async function runService<V extends Variables>(
  definition: ServiceDefinition<V>,
): Promise<void> {
  const { name } = definition;
  const config = loadConfig(name, definition.config);
  const log = createLogger(name, { level: config.logLevel, format: config.logFormat });
  const store = await openStore(config.dataDir, name, {
    migrations: definition.migrations,
    databaseUrl: config.databaseUrl,
    waitForServer: { log },
  });
  await definition.setUp?.({ config, log, store });
  const broker = connectBroker(config.amqpUrls, {
    log,
    connectionName: name,
    topology: { retryDelaysMs: config.retryDelaysMs, retire: definition.retiresQueues },
    tls: config.amqpTls,
  });
  const outages = watchOutages(store, { log });
  const context: ServiceContext<V> = { config, log, store, broker, outages };
  const relay = SERVICE_ACCESS[name].publishes.length > 0
    ? startOutboxRelay(store, broker, { log, outages })
    : undefined;
  const consumers = definition.consumers(context).map((each) => each.start(context));
  const tasks = definition.tasks?.(context) ?? [];
  const retention = startRetention(store, [
    inboxRetention(config.inboxRetentionMs),
    ...definition.retention?.(config) ?? [],
  ], { log });
  const app = serviceApp(definition.routes(context), {
    store,
    broker,
    outages,
    log,
    maxInFlight: config.httpMaxInFlight,
    bodyTimeoutMs: config.httpBodyTimeoutMs,
  });
  const server = serveHttp(app, config.ports[name], log, { hostname: config.httpHost });
  onShutdown(log, [
    server.shutdown,
    ...consumers.map((each) => each.stop),
    ...tasks.map((task) => task.stop),
    ...relay ? [relay.stop] : [],
    retention.stop,
    outages.stop,
    broker.close,
    store.close,
  ]);
}
