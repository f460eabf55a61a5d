/**
 * Who published an event, as the broker vouches for it, and whether that service may publish it.
 *
 * Every service publishes with the AMQP `user_id` property set to its broker user, and RabbitMQ
 * refuses a publish whose `user_id` is not the connection's user (only a user tagged
 * `impersonator` may set another). So `user_id` is the one part of a message a neighbour cannot
 * forge, whatever route the message took: a topic exchange's routing key, a `CC`/`BCC` header
 * (which RabbitMQ before 4.0.3 does not check against topic permissions), the retry exchange, the
 * dead-letter exchange.
 *
 * A consumer that copies a message itself (to a retry queue, to a DLQ) publishes the copy as its own
 * user, so it names the publisher it read in the {@linkcode PUBLISHED_BY_HEADER}; that header is
 * believed only on a message whose `user_id` is the consuming service's own.
 *
 * Origin can be told apart only where each service has a broker user of its own, named
 * `<prefix>-<service>` as `deno task broker:setup` names them (`campus-food-order`, …): then the
 * event types a service publishes are believed only from `<prefix>-<that service>`. Services that
 * share one user (`guest` in development) cannot be told apart, and nothing is checked.
 * @module
 */
import type { Delivery } from "./delivery.ts";
import {
  consumerOf,
  type EventType,
  publisherOfType,
  type Queue,
  type ServiceName,
} from "./topology.ts";

/** The header in which a service that copies a message names the user that published it. */
export const PUBLISHED_BY_HEADER = "x-published-by";

/** The reason a message from the wrong publisher is dead-lettered with. */
export const UNTRUSTED_PUBLISHER = "untrusted publisher";

/** The role of the broker user `deno task dlq:replay` and the console run as. */
export const OPERATOR = "operator";

/** The broker user of `role` (a service, or {@linkcode OPERATOR}) in the deployment of `prefix`. */
export function brokerUserOf(role: ServiceName | typeof OPERATOR, prefix: string): string {
  return `${prefix}-${role}`;
}

/** The deployment prefix of `user` when it is named `<prefix>-<role>`, else undefined. */
export function prefixOf(user: string, role: ServiceName | typeof OPERATOR): string | undefined {
  const suffix = `-${role}`;
  return user.endsWith(suffix) && user.length > suffix.length
    ? user.slice(0, -suffix.length)
    : undefined;
}

/**
 * The user that published `message`, as the broker vouches for it: its `user_id`, or, on a copy
 * that `queue`'s consumer made itself (its `user_id` is that consumer's user in the deployment of
 * `prefix`), the user the copy names in {@linkcode PUBLISHED_BY_HEADER}. Undefined when it carries
 * no `user_id`.
 */
export function publisherOf(
  message: Pick<Delivery, "userId" | "headers">,
  queue: Queue,
  prefix: string | undefined,
): string | undefined {
  const copiedBy = prefix === undefined ? undefined : brokerUserOf(consumerOf(queue), prefix);
  const named = message.headers[PUBLISHED_BY_HEADER];
  if (message.userId !== undefined && message.userId === copiedBy) {
    return typeof named === "string" ? named : undefined;
  }
  return message.userId;
}

/**
 * Whether `queue`'s consumer believes `message` to be an `eventType` event: always where services
 * share one broker user (`prefix` undefined), else only when it comes from the user of the service
 * that publishes `eventType`.
 */
export function isTrusted(
  message: Pick<Delivery, "userId" | "headers">,
  eventType: EventType,
  options: { queue: Queue; prefix: string | undefined },
): boolean {
  const { queue, prefix } = options;
  if (prefix === undefined) return true;
  return publisherOf(message, queue, prefix) === brokerUserOf(publisherOfType(eventType), prefix);
}
