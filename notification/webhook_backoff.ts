/**
 * When a webhook delivery is tried again after a failed attempt: the project's backoff
 * (`shared/backoff.ts`) with the webhook's schedule, the first retry within a second, capped so
 * that two attempts are never more than a minute apart, for at least a day; then the delivery has
 * failed.
 * @module
 */
import { backoffDelayMs } from "../shared/backoff.ts";

/** Options for {@linkcode nextAttemptAt}. */
export interface WebhookBackoffOptions {
  /** The delay after the first failure, before jitter, in milliseconds. @default {1000} */
  initialDelayMs?: number;
  /**
   * The longest delay, before jitter, in milliseconds. Below a minute by the sender's poll (1 s)
   * and more, so that two attempts start less than a minute apart. @default {55000}
   */
  maxDelayMs?: number;
  /** How long after the notification attempts go on, in milliseconds. @default {86400000 (24 h)} */
  giveUpAfterMs?: number;
  /** A number in [0, 1), for the jitter. @default {Math.random} */
  random?: () => number;
}

/**
 * When to try a delivery recorded at `createdAt` again after its `failures`th failure at `now`
 * (milliseconds since the epoch), with {@linkcode backoffDelayMs}'s equal jitter so that
 * deliveries that failed together do not come back together; undefined once `giveUpAfterMs` has
 * passed since `createdAt`: it has failed.
 * @throws {RangeError} when `failures` is not a positive integer
 */
export function nextAttemptAt(
  failures: number,
  times: { createdAt: number; now: number },
  options: WebhookBackoffOptions = {},
): number | undefined {
  const { initialDelayMs = 1000, maxDelayMs = 55_000, giveUpAfterMs = 86_400_000, random } =
    options;
  if (times.now - times.createdAt >= giveUpAfterMs) return undefined;
  return times.now + backoffDelayMs(failures, { initialDelayMs, maxDelayMs, random });
}
