/**
 * The events on the wire: zod schemas, their inferred types, and {@linkcode parseEvent}, which turns
 * a message body into an event or into the reason it is poison. Consumers ignore extra fields.
 * @module
 */
import { z } from "zod";
import { EventType } from "./topology.ts";
import { newId } from "./ids.ts";

/** One line of an order; the same limits hold over HTTP and on the wire. */
export const orderItemSchema = z.object({
  sku: z.string().min(1).max(64),
  qty: z.number().int().min(1).max(100),
});
export type OrderItem = z.infer<typeof orderItemSchema>;

export const orderItemsSchema = z.array(orderItemSchema).min(1).max(50);

const eventId = z.string().min(1).max(128);
const timestamp = z.string().min(1).max(64);

/**
 * `created_at` and `correlation_id` are optional here so that the scripts of the original Python
 * system this project replaces, which publish this event by hand without them, are still
 * understood; everything this project publishes carries both.
 */
export const orderPlacedSchema = z.object({
  event_id: eventId,
  event_type: z.literal(EventType.OrderPlaced),
  created_at: timestamp.optional(),
  correlation_id: z.string().min(1).max(128).optional(),
  order: z.object({
    order_id: z.string().min(1).max(128),
    user_id: z.string().min(1).max(128),
    items: orderItemsSchema,
    created_at: timestamp.optional(),
    /**
     * When the order service stops waiting for an outcome and expires the order (`created_at` plus
     * `ORDER_DECISION_TIMEOUT`): inventory takes no stock for an order it sees after this.
     */
    decide_by: timestamp.optional(),
  }),
});
export type OrderPlaced = z.infer<typeof orderPlacedSchema>;

const outcomeFields = {
  event_id: eventId,
  created_at: timestamp,
  correlation_id: z.string().min(1).max(128),
  order_id: z.string().min(1).max(128),
  /** Carried so that the notification can name the student and the food without a lookup. */
  user_id: z.string().min(1).max(128).optional(),
  items: orderItemsSchema.optional(),
};

export const inventoryReservedSchema = z.object({
  ...outcomeFields,
  event_type: z.literal(EventType.InventoryReserved),
});
export type InventoryReserved = z.infer<typeof inventoryReservedSchema>;

export const inventoryFailedSchema = z.object({
  ...outcomeFields,
  event_type: z.literal(EventType.InventoryFailed),
  reason: z.string().min(1).max(1000),
});
export type InventoryFailed = z.infer<typeof inventoryFailedSchema>;

export const inventoryOutcomeSchema = z.discriminatedUnion("event_type", [
  inventoryReservedSchema,
  inventoryFailedSchema,
]);
export type InventoryOutcome = z.infer<typeof inventoryOutcomeSchema>;

/**
 * The order service's decision that the kitchen makes the order: published in the transaction that
 * makes it CONFIRMED, and the only thing that tells a student an order is confirmed.
 */
export const orderConfirmedSchema = z.object({
  ...outcomeFields,
  event_type: z.literal(EventType.OrderConfirmed),
  user_id: z.string().min(1).max(128),
  items: orderItemsSchema,
});
export type OrderConfirmed = z.infer<typeof orderConfirmedSchema>;

/** The order service's decision that the kitchen cannot make the order, and why. */
export const orderRejectedSchema = z.object({
  ...outcomeFields,
  event_type: z.literal(EventType.OrderRejected),
  user_id: z.string().min(1).max(128),
  reason: z.string().min(1).max(1000),
});
export type OrderRejected = z.infer<typeof orderRejectedSchema>;

/** Why an order was called off: the student cancelled it, or no outcome came in time. */
export const CancelReason = { cancelled: "cancelled", expired: "expired" } as const;
export type CancelReason = typeof CancelReason[keyof typeof CancelReason];

/**
 * The reason of the `InventoryFailed` for an `OrderPlaced` that came after its order's
 * `OrderCancelled`: no stock was taken, and the cancellation itself is what the student hears of.
 */
export const ORDER_CANCELLED_REASON = "order cancelled";

/**
 * The reason of the `InventoryFailed` for an `OrderPlaced` that reached inventory after its
 * `decide_by`: the order service expires such an order whatever inventory does, so inventory takes
 * no stock for it, and the expiry is what the student hears of.
 */
export const ORDER_EXPIRED_REASON = "order expired";

export const orderCancelledSchema = z.object({
  ...outcomeFields,
  event_type: z.literal(EventType.OrderCancelled),
  reason: z.enum([CancelReason.cancelled, CancelReason.expired]),
  /**
   * The status the order left: CONFIRMED tells notification that the student was (or must first
   * be) told of the confirmation, whichever of the two events it receives first.
   */
  previous_status: z.enum(["PENDING", "CONFIRMED"]).optional(),
});
export type OrderCancelled = z.infer<typeof orderCancelledSchema>;

/** Any event this system publishes. */
export type Event =
  | OrderPlaced
  | InventoryOutcome
  | OrderConfirmed
  | OrderRejected
  | OrderCancelled;

/** What {@linkcode parseEvent} found: the event, or why the message is poison. */
export type ParseResult<T> = { ok: true; event: T } | { ok: false; reason: string };

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a message body with `schema`. Never throws: a body that is not UTF-8, not JSON, not an
 * object, or not valid gives the reason, naming the field and what was wrong.
 */
export function parseEvent<T>(body: Uint8Array, schema: z.ZodType<T>): ParseResult<T> {
  let text: string;
  try {
    text = decoder.decode(body);
  } catch {
    return { ok: false, reason: "body is not valid UTF-8" };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `body is not JSON: ${(error as Error).message}` };
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return {
      ok: false,
      reason: `body is not a JSON object but ${Array.isArray(json) ? "an array" : typeof json}`,
    };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, event: parsed.data };
  return { ok: false, reason: describeIssues(parsed.error) };
}

/** One invalid field and what was wrong with it. */
export interface FieldIssue {
  /** `order.items[0].qty`, or `(body)` for the whole. */
  field: string;
  reason: string;
}

/** Lists the invalid fields of a zod error; each unknown key is a field of its own. */
export function listIssues(error: z.ZodError): FieldIssue[] {
  return error.issues.flatMap((issue) =>
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({
        field: fieldPath([...issue.path, key]),
        reason: "unknown field",
      }))
      : [{ field: fieldPath(issue.path), reason: issue.message }]
  );
}

/** Names each invalid field and what was wrong: `order.items[0].qty: expected int, received string`. */
export function describeIssues(error: z.ZodError): string {
  return listIssues(error).slice(0, 5).map(({ field, reason }) => `${field}: ${reason}`).join("; ");
}

function fieldPath(path: PropertyKey[]): string {
  if (path.length === 0) return "(body)";
  return path.map((key, i) =>
    typeof key === "number" ? `[${key}]` : `${i ? "." : ""}${String(key)}`
  ).join("");
}

/** An order as the order service stores it and as `OrderPlaced` carries it. */
export interface Order {
  order_id: string;
  user_id: string;
  items: OrderItem[];
  created_at: string;
  decide_by?: string;
}

/** Creates the `OrderPlaced` event of `order`. */
export function orderPlaced(order: Order): OrderPlaced {
  return {
    event_id: newId(),
    event_type: EventType.OrderPlaced,
    created_at: new Date().toISOString(),
    correlation_id: order.order_id,
    order,
  };
}

/** What the events about one order carry of it besides their own fields. */
interface OrderFacts {
  order_id: string;
  user_id: string;
  items: OrderItem[];
}

function aboutOrder(order: OrderFacts) {
  return {
    event_id: newId(),
    created_at: new Date().toISOString(),
    correlation_id: order.order_id,
    order_id: order.order_id,
    user_id: order.user_id,
    items: order.items,
  };
}

/** Creates the outcome event of a reservation: reserved when `reason` is undefined, else failed. */
export function inventoryOutcome(order: OrderFacts, reason?: string): InventoryOutcome {
  const fields = aboutOrder(order);
  return reason === undefined
    ? { ...fields, event_type: EventType.InventoryReserved }
    : { ...fields, event_type: EventType.InventoryFailed, reason };
}

/** Creates the `OrderConfirmed` event of `order`. */
export function orderConfirmed(order: OrderFacts): OrderConfirmed {
  return { ...aboutOrder(order), event_type: EventType.OrderConfirmed };
}

/** Creates the `OrderRejected` event of `order`, rejected for `reason`. */
export function orderRejected(order: OrderFacts, reason: string): OrderRejected {
  return { ...aboutOrder(order), event_type: EventType.OrderRejected, reason };
}

/** Creates the `OrderCancelled` event of `order`, which left `previousStatus` for `reason`. */
export function orderCancelled(
  order: OrderFacts,
  change: { reason: CancelReason; previousStatus: "PENDING" | "CONFIRMED" },
): OrderCancelled {
  return {
    ...aboutOrder(order),
    event_type: EventType.OrderCancelled,
    reason: change.reason,
    previous_status: change.previousStatus,
  };
}
