import assert from "node:assert/strict";
import {
  inventoryOutcome,
  inventoryOutcomeSchema,
  orderPlaced,
  orderPlacedSchema,
  parseEvent,
} from "./events.ts";

const encoder = new TextEncoder();

function bytes(value: unknown): Uint8Array {
  return encoder.encode(typeof value === "string" ? value : JSON.stringify(value));
}

/** The fields every event of order `o1` has, whatever its type. */
const ENVELOPE = {
  event_id: "01J00000000000000000000000",
  created_at: "2024-01-01T00:00:00.000Z",
  correlation_id: "o1",
};

function validOrderPlaced(): Record<string, unknown> {
  return {
    ...ENVELOPE,
    event_type: "OrderPlaced",
    order: {
      order_id: "o1",
      user_id: "u1",
      items: [{ sku: "burger", qty: 2 }],
      created_at: "2024-01-01T00:00:00.000Z",
    },
  };
}

function withOrder(order: Record<string, unknown>): Record<string, unknown> {
  const event = validOrderPlaced();
  return { ...event, order: { ...(event.order as Record<string, unknown>), ...order } };
}

/** Parses `body` with `schema` expecting poison and returns the reason. */
function rejectionOf(
  body: Uint8Array,
  schema: Parameters<typeof parseEvent>[1] = orderPlacedSchema,
): string {
  const result = parseEvent(body, schema);
  assert.equal(result.ok, false, "expected the body to be poison");
  return (result as { ok: false; reason: string }).reason;
}

Deno.test("parseEvent() accepts a valid OrderPlaced and ignores extra fields", () => {
  const event = {
    ...validOrderPlaced(),
    trace_id: "t1",
    order: { ...withOrder({}).order as object, note: "no onions" },
  };
  const result = parseEvent(bytes(event), orderPlacedSchema);
  assert.ok(result.ok);
  assert.equal(result.event.event_id, "01J00000000000000000000000");
  assert.equal(result.event.order.order_id, "o1");
  assert.deepEqual(result.event.order.items, [{ sku: "burger", qty: 2 }]);
  assert.equal("trace_id" in result.event, false);
  assert.equal("note" in result.event.order, false);
});

Deno.test("parseEvent() accepts the original Python system's OrderPlaced without created_at or correlation_id", () => {
  const python = {
    event_id: "python-1",
    event_type: "OrderPlaced",
    order: { order_id: "o1", user_id: "u1", items: [{ sku: "fries", qty: 1 }] },
  };
  const result = parseEvent(bytes(python), orderPlacedSchema);
  assert.ok(result.ok);
  assert.equal(result.event.created_at, undefined);
  assert.equal(result.event.correlation_id, undefined);
  assert.equal(result.event.order.items[0].sku, "fries");
});

Deno.test("parseEvent() rejects a body that is not UTF-8", () => {
  const reason = rejectionOf(new Uint8Array([0xff, 0xfe]));
  assert.match(reason, /UTF-8/);
});

Deno.test("parseEvent() rejects a body that is not JSON", () => {
  const reason = rejectionOf(bytes("not json {"));
  assert.match(reason, /not JSON/);
});

Deno.test("parseEvent() rejects an empty body", () => {
  const reason = rejectionOf(new Uint8Array());
  assert.match(reason, /not JSON/);
});

Deno.test("parseEvent() rejects a JSON array", () => {
  const reason = rejectionOf(bytes([validOrderPlaced()]));
  assert.match(reason, /not a JSON object but an array/);
});

Deno.test("parseEvent() rejects JSON null and scalars", () => {
  assert.match(rejectionOf(bytes("null")), /not a JSON object/);
  assert.match(rejectionOf(bytes("42")), /not a JSON object but number/);
  assert.match(rejectionOf(bytes('"OrderPlaced"')), /not a JSON object but string/);
});

Deno.test("parseEvent() rejects an empty object, naming the missing fields", () => {
  const reason = rejectionOf(bytes({}));
  assert.match(reason, /event_id/);
  assert.match(reason, /event_type/);
  assert.match(reason, /order/);
});

Deno.test("parseEvent() rejects an order without items", () => {
  const event = validOrderPlaced();
  delete (event.order as Record<string, unknown>).items;
  const reason = rejectionOf(bytes(event));
  assert.ok(reason.includes("order.items"), reason);
});

Deno.test("parseEvent() rejects an order with empty items", () => {
  const reason = rejectionOf(bytes(withOrder({ items: [] })));
  assert.ok(reason.includes("order.items"), reason);
});

Deno.test("parseEvent() rejects a negative qty", () => {
  const reason = rejectionOf(bytes(withOrder({ items: [{ sku: "burger", qty: -1 }] })));
  assert.ok(reason.includes("order.items[0].qty"), reason);
});

Deno.test("parseEvent() rejects a qty given as a string", () => {
  const reason = rejectionOf(bytes(withOrder({ items: [{ sku: "burger", qty: "1" }] })));
  assert.ok(reason.includes("order.items[0].qty"), reason);
});

Deno.test("parseEvent() rejects a fractional qty", () => {
  const reason = rejectionOf(bytes(withOrder({
    items: [{ sku: "burger", qty: 1 }, { sku: "fries", qty: 1.5 }],
  })));
  assert.ok(reason.includes("order.items[1].qty"), reason);
});

Deno.test("parseEvent() rejects a wrong event_type", () => {
  const reason = rejectionOf(bytes({ ...validOrderPlaced(), event_type: "InventoryReserved" }));
  assert.ok(reason.includes("event_type"), reason);
});

Deno.test("parseEvent() rejects an empty sku", () => {
  const reason = rejectionOf(bytes(withOrder({ items: [{ sku: "", qty: 1 }] })));
  assert.ok(reason.includes("order.items[0].sku"), reason);
});

function outcomeFields(): Record<string, unknown> {
  return { ...ENVELOPE, order_id: "o1" };
}

Deno.test("parseEvent() with inventoryOutcomeSchema accepts InventoryReserved", () => {
  const result = parseEvent(
    bytes({ ...outcomeFields(), event_type: "InventoryReserved", extra: true }),
    inventoryOutcomeSchema,
  );
  assert.ok(result.ok);
  assert.equal(result.event.event_type, "InventoryReserved");
  assert.equal(result.event.order_id, "o1");
});

Deno.test("parseEvent() with inventoryOutcomeSchema accepts InventoryFailed with a reason", () => {
  const result = parseEvent(
    bytes({ ...outcomeFields(), event_type: "InventoryFailed", reason: "out of burgers" }),
    inventoryOutcomeSchema,
  );
  assert.ok(result.ok);
  assert.equal(result.event.event_type, "InventoryFailed");
  assert.equal(
    result.event.event_type === "InventoryFailed" ? result.event.reason : undefined,
    "out of burgers",
  );
});

/** Outcomes inventoryOutcomeSchema refuses: what each is, its fields, and what its reason names. */
const REJECTED_OUTCOMES: Array<[what: string, fields: Record<string, unknown>, names: RegExp]> = [
  ["InventoryFailed without reason", { event_type: "InventoryFailed" }, /reason/],
  ["an unknown event_type", { event_type: "OrderPlaced" }, /event_type/],
  [
    "an outcome without order_id",
    { event_type: "InventoryReserved", order_id: undefined },
    /order_id/,
  ],
];

for (const [what, fields, names] of REJECTED_OUTCOMES) {
  Deno.test(`parseEvent() with inventoryOutcomeSchema rejects ${what}`, () => {
    const reason = rejectionOf(bytes({ ...outcomeFields(), ...fields }), inventoryOutcomeSchema);
    assert.match(reason, names);
  });
}

const order = {
  order_id: "01JORDER0000000000000000AA",
  user_id: "u1",
  items: [{ sku: "burger", qty: 1 }, { sku: "soda", qty: 2 }],
  created_at: "2024-01-01T00:00:00.000Z",
};

Deno.test("orderPlaced() builds an event that parses back", () => {
  const event = orderPlaced(order);
  assert.equal(event.event_type, "OrderPlaced");
  assert.equal(event.correlation_id, order.order_id);
  assert.equal(event.event_id.length, 26);
  assert.ok(event.created_at);
  const result = parseEvent(bytes(event), orderPlacedSchema);
  assert.ok(result.ok);
  assert.deepEqual(result.event, event);
});

Deno.test("orderPlaced() gives every event its own event_id", () => {
  assert.notEqual(orderPlaced(order).event_id, orderPlaced(order).event_id);
});

Deno.test("inventoryOutcome() without a reason builds an InventoryReserved that parses back", () => {
  const event = inventoryOutcome(order);
  assert.equal(event.event_type, "InventoryReserved");
  assert.equal(event.order_id, order.order_id);
  assert.equal(event.correlation_id, order.order_id);
  const result = parseEvent(bytes(event), inventoryOutcomeSchema);
  assert.ok(result.ok);
  assert.deepEqual(result.event, event);
});

Deno.test("inventoryOutcome() with a reason builds an InventoryFailed that parses back", () => {
  const event = inventoryOutcome(order, 'unknown sku "tofu"');
  assert.equal(event.event_type, "InventoryFailed");
  const result = parseEvent(bytes(event), inventoryOutcomeSchema);
  assert.ok(result.ok);
  assert.equal(result.event.event_type, "InventoryFailed");
  assert.deepEqual(result.event, event);
});
