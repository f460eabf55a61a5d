/**
 * The topics of a store: listeners that hear the commits of transactions that called
 * `tx.notify(topic)`, within one process, as PostgreSQL's LISTEN/NOTIFY across processes.
 * @module
 */
import type { Store } from "./store.ts";

/** A store's listeners, by topic. */
export interface TopicListeners {
  /** Adds a listener of `topic`; see {@linkcode Store.listen}. */
  listen: Store["listen"];
  /** Calls, once each, the listeners of every topic that a commit announces. */
  announce(topics: ReadonlySet<string>): void;
}

/** New listeners of no topic yet, for one store. */
export function topicListeners(): TopicListeners {
  const listeners = new Map<string, Set<() => void>>();
  return {
    listen(topic, listener) {
      const set = listeners.get(topic) ?? new Set();
      listeners.set(topic, set.add(listener));
      return () => void set.delete(listener);
    },
    announce(topics) {
      for (const topic of topics) {
        // Queued, not called: a listener that throws must not turn a commit into a failure.
        for (const listener of listeners.get(topic) ?? []) queueMicrotask(listener);
      }
    },
  };
}
