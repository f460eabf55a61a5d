/**
 * The service's metrics, in the Prometheus text format through `prom-client`: what was consumed,
 * acked, retried, dead-lettered and skipped, what was published and confirmed, the outbox, handler
 * and HTTP durations, and process memory. One registry per process, as a process is one service.
 * @module
 */
import client from "prom-client";

/** The registry `/metrics` renders. */
export const registry: client.Registry = new client.Registry();

const byQueue = ["queue", "event_type"] as const;

function counter<L extends string>(name: string, help: string, labelNames: readonly L[]) {
  return new client.Counter<L>({
    name: `campus_food_${name}`,
    help,
    labelNames,
    registers: [registry],
  });
}

/** Every metric the services record. */
export const metrics = {
  consumed: counter("messages_consumed_total", "Messages delivered to a consumer", byQueue),
  acked: counter("messages_acked_total", "Messages acked after their effects committed", byQueue),
  retried: counter(
    "messages_retried_total",
    "Messages sent to a retry queue after a transient failure",
    byQueue,
  ),
  deadLettered: counter("messages_dead_lettered_total", "Messages sent to a .dlq", byQueue),
  duplicates: counter(
    "messages_duplicate_total",
    "Messages skipped as already handled (inbox)",
    byQueue,
  ),
  published: counter("events_published_total", "Events the outbox relay published", ["event_type"]),
  confirmed: counter("events_confirmed_total", "Published events the broker confirmed", [
    "event_type",
  ]),
  handlerDuration: new client.Histogram<"queue">({
    name: "campus_food_handler_duration_seconds",
    help: "Time to handle and commit one batch of deliveries",
    labelNames: ["queue"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  }),
  httpRequests: counter("http_requests_total", "HTTP requests answered", [
    "method",
    "route",
    "status",
  ]),
  httpDuration: new client.Histogram<"method" | "route">({
    name: "campus_food_http_request_duration_seconds",
    help: "Time to answer an HTTP request",
    labelNames: ["method", "route"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  }),
};

new client.Gauge({
  name: "process_resident_memory_bytes",
  help: "Resident memory size in bytes",
  registers: [registry],
  collect() {
    this.set(Deno.memoryUsage().rss);
  },
});
new client.Gauge({
  name: "process_heap_used_bytes",
  help: "V8 heap in use, in bytes",
  registers: [registry],
  collect() {
    this.set(Deno.memoryUsage().heapUsed);
  },
});

/** Reports the outbox at each scrape: rows waiting and the age of the oldest, in seconds. */
export function watchOutbox(
  readOutbox: () => Promise<{ count: number; oldestCreatedAt: string | null }>,
): void {
  for (const name of ["campus_food_outbox_pending", "campus_food_outbox_oldest_age_seconds"]) {
    registry.removeSingleMetric(name);
  }
  new client.Gauge({
    name: "campus_food_outbox_pending",
    help: "Outbox rows not yet confirmed by the broker",
    registers: [registry],
    async collect() {
      this.set((await readOutbox()).count);
    },
  });
  new client.Gauge({
    name: "campus_food_outbox_oldest_age_seconds",
    help: "Age of the oldest outbox row not yet confirmed, 0 when empty",
    registers: [registry],
    async collect() {
      const { oldestCreatedAt } = await readOutbox();
      this.set(
        oldestCreatedAt ? Math.max(0, (Date.now() - Date.parse(oldestCreatedAt)) / 1000) : 0,
      );
    },
  });
}
