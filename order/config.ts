/**
 * What the order service reads from the environment besides what every service reads.
 * @module
 */
import { count, duration, variable } from "../shared/config.ts";

/** How long an order may stay PENDING, unless `ORDER_DECISION_TIMEOUT` says otherwise. */
export const DEFAULT_ORDER_DECISION_TIMEOUT_MS = 120_000;

/** The order service's own variables. */
export const ORDER_VARIABLES = {
  /** How long an order may stay PENDING before it becomes EXPIRED, in milliseconds. */
  orderDecisionTimeoutMs: variable(
    "ORDER_DECISION_TIMEOUT",
    duration.prefault(`${DEFAULT_ORDER_DECISION_TIMEOUT_MS}ms`),
    { expected: "a duration such as 30s, 2m or 1h" },
  ),
  /** How long `POST /order` remembers an `Idempotency-Key`, in milliseconds. */
  idempotencyKeyRetentionMs: variable("IDEMPOTENCY_KEY_RETENTION", duration.prefault("24h"), {
    expected: "a duration such as 30m, 24h or 7d",
  }),
  /** The most units one student's PENDING and CONFIRMED orders may hold together; unset: no cap. */
  maxUnitsPerStudent: variable("MAX_UNITS_PER_STUDENT", count.optional(), {
    expected: "a positive integer",
  }),
};
