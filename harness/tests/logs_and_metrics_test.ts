/**
 * What operators rely on, against the real broker: one trace id followed through all three
 * services, and the Prometheus metrics of each.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { metricSample, postOrder, request } from "../lib/http_probes.ts";
import { stackTest } from "../lib/stack.ts";
import { EventType } from "../../shared/topology.ts";
import { traceIdOf } from "../../shared/traceparent.ts";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const BURGERS = { user_id: "u1", items: [{ sku: "burger", qty: 2 }] };

stackTest(
  "a traceparent from the request is carried by every message and logged by all three services, against the broker",
  {},
  async (stack) => {
    const tap = await stack.tools.tap([EventType.OrderPlaced, EventType.InventoryReserved]);
    const response = await postOrder(stack.url("order"), BURGERS, { traceparent: TRACEPARENT });
    assert.equal(response.status, 202);
    assert.equal(traceIdOf(response.headers.get("traceparent")), TRACE_ID);
    const { order_id } = await response.json();
    await waitFor("both messages on the tap", () => tap.messages.length === 2);
    for (const message of tap.messages) {
      assert.equal(traceIdOf(message.headers.traceparent), TRACE_ID, String(message.type));
    }
    const expected = {
      order: ["accepted order", "updated order status"],
      inventory: ["reserved stock"],
      notification: [`order ${order_id} for u1 confirmed: 2× burger`],
    };
    for (const [name, messages] of Object.entries(expected)) {
      const logs = stack.services[name as keyof typeof expected]!.logs;
      for (const msg of messages) {
        const line = await waitFor(
          `${name} to log "${msg}"`,
          () => logs.find((l) => l.msg === msg),
        );
        assert.equal(line.trace_id, TRACE_ID, `${name}: ${msg}`);
        assert.equal(line.order_id, order_id);
      }
    }
  },
);

stackTest(
  "an order without a traceparent starts a trace of its own, against the broker",
  {},
  async (stack) => {
    const response = await postOrder(stack.url("order"), BURGERS);
    const traceId = traceIdOf(response.headers.get("traceparent"));
    assert.ok(traceId);
    const { order_id } = await response.json();
    const line = await waitFor(
      "the notification",
      () => stack.services.notification!.logs.find((l) => l.order_id === order_id),
    );
    assert.equal(line.trace_id, traceId);
  },
);

stackTest(
  "/metrics of each service counts what it consumed, published and answered, against the broker",
  {},
  async (stack) => {
    assert.equal((await postOrder(stack.url("order"), BURGERS)).status, 202);
    assert.equal(
      (await request(`${stack.url("order")}/order`, { method: "POST", body: "x" })).status,
      415,
    );
    await waitFor("the notification metric", async () => {
      const text = await (await request(`${stack.url("notification")}/metrics`)).text();
      return metricSample(text, "campus_food_messages_acked_total", {
        queue: "order-confirmed",
      }) ===
        1;
    });
    const scrape = async (name: "order" | "inventory" | "notification") => {
      const response = await request(`${stack.url(name)}/metrics`);
      assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
      return await response.text();
    };
    const order_ = await scrape("order");
    assert.equal(
      metricSample(order_, "campus_food_events_published_total", { event_type: "OrderPlaced" }),
      1,
    );
    assert.equal(
      metricSample(order_, "campus_food_events_confirmed_total", { event_type: "OrderPlaced" }),
      1,
    );
    assert.equal(
      metricSample(order_, "campus_food_http_requests_total", { route: "/order", status: "202" }),
      1,
    );
    assert.equal(
      metricSample(order_, "campus_food_http_requests_total", { route: "/order", status: "415" }),
      1,
    );
    assert.equal(metricSample(order_, "campus_food_outbox_pending"), 0);
    assert.equal(metricSample(order_, "campus_food_outbox_oldest_age_seconds"), 0);
    assert.ok((metricSample(order_, "process_resident_memory_bytes") ?? 0) > 1_000_000);
    assert.ok(order_.includes("campus_food_http_request_duration_seconds_bucket"));

    const inventory = await scrape("inventory");
    const labels = { queue: "order-placed", event_type: "OrderPlaced" };
    assert.equal(metricSample(inventory, "campus_food_messages_consumed_total", labels), 1);
    assert.equal(metricSample(inventory, "campus_food_messages_acked_total", labels), 1);
    assert.equal(
      metricSample(inventory, "campus_food_handler_duration_seconds_count", {
        queue: "order-placed",
      }),
      1,
    );
    assert.equal(
      metricSample(inventory, "campus_food_events_confirmed_total", {
        event_type: "InventoryReserved",
      }),
      1,
    );
  },
);
