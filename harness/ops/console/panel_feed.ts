/**
 * The panels that changed at each reading, rendered once for every open page: what `/events`
 * streams.
 * @module
 */
import type { Live } from "./live.ts";
import { renderPanels } from "./panels.tsx";

/** Receives the HTML of the panels that changed, by panel id. */
export type PanelListener = (changed: ReadonlyMap<string, string>) => void;

/** The panels as they change; see {@linkcode feedPanels}. */
export interface PanelFeed {
  /** Every panel as of the last reading. */
  all(): ReadonlyMap<string, string>;
  /** Calls `listener` after each reading that changed a panel; returns how to stop. */
  subscribe(listener: PanelListener): () => void;
}

/** Renders the panels of each of `live`'s readings while anyone listens. */
export function feedPanels(live: Live): PanelFeed {
  const listeners = new Set<PanelListener>();
  let last: Map<string, string> | undefined;
  live.subscribe((snapshot) => {
    // With no page open there is nothing to render for.
    if (listeners.size === 0) return void (last = undefined);
    const next = renderPanels(snapshot);
    const changed = new Map([...next].filter(([id, html]) => last?.get(id) !== html));
    last = next;
    if (changed.size > 0) { for (const listener of listeners) listener(changed); }
  });
  return {
    all: () => last ?? renderPanels(live.snapshot()),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
