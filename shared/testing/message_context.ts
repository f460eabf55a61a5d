/**
 * A message context for calling an event handler in a unit test: the events it publishes are
 * collected instead of going into the outbox.
 * @module
 */
import type { BatchHandler, MessageContext } from "../consumer.ts";
import type { Event } from "../events.ts";
import type { Tx } from "../store.ts";

/** A context whose `publish` appends to `published`. */
export function testContext(published: Event[] = []): MessageContext {
  return {
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    publish: (event) => void published.push(event),
  };
}

/**
 * Gives `events` to `handle` in `tx` as the consumer gives it a batch of them, collecting what they
 * publish in `published`; resolves with what runs after the commit, for all of them.
 */
export async function handleEvents<T>(
  handle: BatchHandler<T>,
  tx: Tx,
  events: T[],
  published: Event[] = [],
): Promise<() => void> {
  const afterCommit = await handle(
    tx,
    events.map((event) => ({ event, context: testContext(published) })),
  );
  return () => afterCommit.forEach((then) => then?.());
}
