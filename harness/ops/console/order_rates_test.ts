import assert from "node:assert/strict";
import { countOrders, ratesBetween } from "./order_rates.ts";

const METRICS = `# HELP campus_food_http_requests_total HTTP requests answered
# TYPE campus_food_http_requests_total counter
campus_food_http_requests_total{method="POST",route="/order",status="202"} 40
campus_food_http_requests_total{method="POST",route="/orders",status="202"} 2
campus_food_http_requests_total{method="POST",route="/order",status="400"} 3
campus_food_http_requests_total{method="GET",route="/orders/:order_id",status="200"} 99
campus_food_http_requests_total{method="POST",route="/orders/:order_id/cancel",status="202"} 5
# TYPE campus_food_order_status_changes_total counter
campus_food_order_status_changes_total{from="PENDING",to="CONFIRMED"} 30
campus_food_order_status_changes_total{from="PENDING",to="REJECTED"} 7
campus_food_order_status_changes_total{from="PENDING",to="CANCELLED"} 1
campus_food_order_status_changes_total{from="CONFIRMED",to="CANCELLED"} 4
campus_food_order_status_changes_total{from="PENDING",to="EXPIRED"} 2
campus_food_outbox_pending 0
`;

Deno.test("countOrders() counts accepted POSTs and the statuses orders entered", () => {
  assert.deepEqual(countOrders(METRICS), {
    placed: 42,
    confirmed: 30,
    rejected: 7,
    cancelled: 5,
    expired: 2,
  });
});

Deno.test("countOrders() of a service that counted nothing yet is all zeros", () => {
  assert.deepEqual(countOrders("# TYPE campus_food_outbox_pending gauge\n"), {
    placed: 0,
    confirmed: 0,
    rejected: 0,
    cancelled: 0,
    expired: 0,
  });
});

Deno.test("ratesBetween() divides each increase by the seconds between the readings", () => {
  const zero = { placed: 0, confirmed: 0, rejected: 0, cancelled: 0, expired: 0 };
  const rates = ratesBetween(
    { t: 10_000, counts: { ...zero, placed: 10, confirmed: 4 } },
    { t: 15_000, counts: { ...zero, placed: 60, confirmed: 29, rejected: 5 } },
  );
  assert.deepEqual(rates, { ...zero, placed: 10, confirmed: 5, rejected: 1 });
});

Deno.test("ratesBetween() takes a counter that went down as reset by a restart", () => {
  const zero = { placed: 0, confirmed: 0, rejected: 0, cancelled: 0, expired: 0 };
  const rates = ratesBetween(
    { t: 0, counts: { ...zero, placed: 500 } },
    { t: 2_000, counts: { ...zero, placed: 8 } },
  );
  assert.equal(rates.placed, 4);
});
