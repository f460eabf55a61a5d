/**
 * The order API: `POST /order` (and `/orders`), `GET /orders/{order_id}` and
 * `POST /orders/{order_id}/cancel`. Requests are parsed
 * with zod before anything is stored; a bad one gets a JSON error naming the field and why.
 * With authentication on, the student is the bearer token's subject: an order is placed in the
 * caller's name, and anyone but its owner (or an admin) is told it does not exist.
 * @module
 */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Context } from "hono";
import { z } from "zod";
import type { Store } from "../shared/store.ts";
import { listIssues, orderItemSchema } from "../shared/events.ts";
import { placeOrder } from "./place_order.ts";
import { getOrder, orderStatusChanges } from "./orders.ts";
import { cancelOrder } from "./cancel_order.ts";
import type { Logger } from "../shared/log.ts";
import { traceIdOf } from "../shared/traceparent.ts";
import { currentTraceparent, inSpan } from "../shared/tracing.ts";
import { type AuthConfig, authenticate, type Caller, callerOf, mayActFor } from "../shared/auth.ts";

/** The largest request body accepted, in bytes. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Characters that are not text a person reads: controls (C0, DEL, C1: `Cc`), lone surrogates
 * (valid in JSON, not in UTF-8), the line and paragraph separators, and the bidirectional marks,
 * embeddings, overrides and isolates. In an id they break log lines and CSV exports, or show one
 * name to a reader while storing another.
 */
const UNPRINTABLE = /[\p{Cc}\p{Cs}\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/u;

/** A string of `min`–`max` characters with none of {@linkcode UNPRINTABLE}. */
function printableText(min: number, max: number) {
  return z.string().min(min).max(max).superRefine((text, ctx) => {
    const found = UNPRINTABLE.exec(text);
    if (!found) return;
    const code = found[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    ctx.addIssue({
      code: "custom",
      message: `must be printable text: U+${code} at position ${found.index} is a control ` +
        "or formatting character",
    });
  });
}

const orderRequestSchema = z.strictObject({
  /** Optional with a bearer token, whose subject it must then name. */
  user_id: printableText(1, 128).optional(),
  items: z.array(z.strictObject({ ...orderItemSchema.shape, sku: printableText(1, 64) })).min(1)
    .max(50),
});

const idempotencyKeySchema = z.string().min(1).max(255).optional();

/** JSON is UTF-8 (RFC 8259): a body that is not is refused rather than read with U+FFFD in it. */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Options for {@linkcode orderRoutes}. */
export interface OrderRoutesOptions {
  /** Logs each accepted order. @default {no log} */
  log?: Logger;
  /**
   * `ORDER_DECISION_TIMEOUT` in milliseconds, carried by each `OrderPlaced`.
   * @default {DEFAULT_ORDER_DECISION_TIMEOUT_MS}
   */
  decisionTimeoutMs?: number;
  /** How bearer tokens are checked. @default {not at all: anyone may act for any student} */
  auth?: AuthConfig;
  /**
   * `MAX_UNITS_PER_STUDENT`: the most units one student's PENDING and CONFIRMED orders may hold
   * together; an order beyond it is a 409. @default {no cap}
   */
  maxUnitsPerStudent?: number;
}

/** Creates the order API's app. */
export function orderRoutes(store: Store, options: OrderRoutesOptions = {}): Hono {
  const app = new Hono();
  const auth = authenticate(options.auth, { log: options.log });
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => c.json({ error: `body is larger than ${MAX_BODY_BYTES} bytes` }, 413),
  });

  async function createOrder(c: Context): Promise<Response> {
    const contentType = c.req.header("content-type") ?? "";
    if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(contentType)) {
      return c.json({ error: `content-type must be application/json, not "${contentType}"` }, 415);
    }
    // A body the service would have to decode first is one it does not understand (RFC 9110).
    const encoding = c.req.header("content-encoding")?.trim().toLowerCase();
    if (encoding && encoding !== "identity") {
      return c.json(
        { error: `content-encoding "${encoding}" is not supported: send plain JSON` },
        415,
      );
    }
    // Read outside the try: a body cut off at HTTP_BODY_TIMEOUT is a 408, not invalid JSON.
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    let json: unknown;
    try {
      json = JSON.parse(UTF8.decode(bytes));
    } catch (error) {
      const why = error instanceof TypeError ? "not UTF-8" : (error as Error).message;
      return c.json({ error: `body is not valid JSON: ${why}` }, 400);
    }
    const request = orderRequestSchema.safeParse(json);
    if (!request.success) return invalid(c, request.error);
    const key = idempotencyKeySchema.safeParse(c.req.header("idempotency-key"));
    if (!key.success) return invalid(c, key.error, "Idempotency-Key");
    const caller = callerOf(c);
    const user_id = request.data.user_id ?? caller.userId;
    if (user_id === undefined) {
      const issue = {
        field: "user_id",
        reason: "Required (there is no bearer token to take it from)",
      };
      return c.json({ error: `${issue.field}: ${issue.reason}`, issues: [issue] }, 400);
    }
    if (!mayActFor(caller, user_id)) {
      return c.json({ error: "user_id must be the bearer token's subject", field: "user_id" }, 403);
    }

    // The order's trace starts here, or continues the caller's.
    const traceparent = currentTraceparent(c.req.header("traceparent"));
    const result = await inSpan(
      "place order",
      () =>
        placeOrder(store, { user_id, items: request.data.items }, {
          idempotencyKey: key.data,
          traceparent,
          decisionTimeoutMs: options.decisionTimeoutMs,
          maxUnitsPerStudent: options.maxUnitsPerStudent,
        }),
    );
    if (result.kind === "conflict") {
      return c.json({
        error: "Idempotency-Key was already used with a different request",
        field: "Idempotency-Key",
      }, 409);
    }
    if (result.kind === "over_unit_limit") {
      const { limit, held, requested } = result;
      return c.json({
        error:
          `Cannot place the order as ${user_id}'s open orders would hold ${
            held + requested
          } units, over MAX_UNITS_PER_STUDENT (${limit}): ${held} held in PENDING and CONFIRMED ` +
          `orders, ${requested} in this one`,
        limit,
        held,
        requested,
      }, 409);
    }
    const { order_id, status } = result.order;
    if (result.kind === "created") {
      options.log?.info("accepted order", {
        order_id,
        user_id,
        trace_id: traceIdOf(traceparent),
      });
    }
    // As Stripe's API does: a client that resent a request it got no answer to learns that the
    // first one had gone through.
    if (result.kind === "replayed") c.header("Idempotent-Replayed", "true");
    c.header("Location", `/orders/${order_id}`);
    c.header("traceparent", traceparent);
    return c.json({ order_id, status }, 202);
  }

  /**
   * True when `caller` may see order `orderId`: it exists and is theirs, or they are an admin.
   * Whoever may not is told it does not exist, which gives away nothing about others' orders.
   */
  async function maySee(caller: Caller, orderId: string): Promise<boolean> {
    const order = await store.read((tx) => getOrder(tx, orderId));
    return order !== undefined && mayActFor(caller, order.user_id);
  }

  // Authentication comes first, so that nobody learns anything without a token, not even whether
  // the body is too large.
  app.post("/order", auth, limit, createOrder);
  app.post("/orders", auth, limit, createOrder);
  app.get("/orders/:order_id", auth, async (c) => {
    const order = await store.read((tx) => getOrder(tx, c.req.param("order_id")));
    return order && mayActFor(callerOf(c), order.user_id)
      ? c.json(order)
      : c.json({ error: "order not found" }, 404);
  });
  app.post("/orders/:order_id/cancel", auth, async (c) => {
    const caller = callerOf(c);
    // The owner never changes, so the check holds for the cancellation that follows.
    if (!caller.open && !await maySee(caller, c.req.param("order_id"))) {
      return c.json({ error: "order not found" }, 404);
    }
    const traceparent = currentTraceparent(c.req.header("traceparent"));
    const result = await inSpan(
      "cancel order",
      () => cancelOrder(store, c.req.param("order_id"), { traceparent }),
    );
    if (result.kind === "not_found") return c.json({ error: "order not found" }, 404);
    const { order_id, status } = result.order;
    if (result.kind === "conflict") {
      return c.json({ error: `Cannot cancel order ${order_id} as it is ${status}`, status }, 409);
    }
    if (result.kind === "cancelled") {
      orderStatusChanges.inc({ from: result.from, to: "CANCELLED" });
      options.log?.info("cancelled order", {
        order_id,
        previous_status: result.from,
        trace_id: traceIdOf(traceparent),
      });
    }
    c.header("traceparent", traceparent);
    return c.json({ order_id, status }, 202);
  });
  return app;
}

function invalid(c: Context, error: z.ZodError, header?: string): Response {
  const issues = header
    ? error.issues.map((issue) => ({ field: header, reason: issue.message }))
    : listIssues(error);
  return c.json({
    error: issues.map(({ field, reason }) => `${field}: ${reason}`).join("; "),
    issues,
  }, 400);
}
