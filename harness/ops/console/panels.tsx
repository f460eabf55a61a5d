// deno-lint-ignore-file jsx-key -- rendered to a string on the server: no list is ever reconciled
/**
 * The page's panels, each drawn from a {@linkcode Snapshot} alone: the server renders them for the
 * first page and again at each reading, and sends the ones that changed over server-sent events.
 * Buttons are plain forms, so that they work without the page's script too.
 * @module
 */
import type { Child } from "hono/jsx";
import type { Snapshot } from "./live.ts";
import { isOrderId, isSettled } from "./latest_orders.ts";
import { Queues, Rates } from "./chart_panels.tsx";
import { DeadLetters } from "./dead_letters_panel.tsx";
import { Deliveries } from "./deliveries_panel.tsx";
import { TableHead } from "./table_head.tsx";

/** A panel: its element's id and how to draw its content. */
export interface Panel {
  id: string;
  render(snapshot: Snapshot): Child;
}

function StatusLine({ snapshot }: { snapshot: Snapshot }) {
  const { broker, problems } = snapshot;
  const trouble = Object.entries(problems);
  return (
    <>
      <span class={`dot ${broker.connected ? "ok" : "bad"}`} />
      {broker.connected
        ? "broker connected"
        : `broker unreachable: ${broker.error ?? "connecting"}`}
      {trouble.map(([what, why]) => <span class="problem">cannot read {what}: {why}</span>)}
    </>
  );
}

function Services({ snapshot }: { snapshot: Snapshot }) {
  return (
    <ul class="services">
      {snapshot.services.map(({ name, state, detail }) => (
        <li data-service={name} data-state={state}>
          <span class={`badge state-${state.replace(" ", "-")}`}>{state}</span>
          <strong>{name}</strong>
          {detail && <small>{detail}</small>}
          {snapshot.controls && (
            <form
              method="post"
              action={`/services/${encodeURIComponent(name)}/${
                state === "stopped" ? "start" : "stop"
              }`}
            >
              <button type="submit">{state === "stopped" ? "Start" : "Stop"}</button>
            </form>
          )}
        </li>
      ))}
    </ul>
  );
}

function Orders({ snapshot }: { snapshot: Snapshot }) {
  if (snapshot.orders.length === 0) return <p class="hint">No orders yet.</p>;
  return (
    <table class="orders">
      <TableHead columns={["order", "student", "items", "status", "told", ""]} />
      <tbody>
        {snapshot.orders.map((order) => (
          <tr
            data-order-id={order.order_id}
            data-status={order.status}
            data-notified={order.notified ?? ""}
            class={isSettled(order) ? "settled" : "unsettled"}
          >
            <td class="id" title={order.order_id}>…{order.order_id.slice(-8)}</td>
            <td>{order.user_id}</td>
            <td>{order.items.map((item) => `${item.qty}× ${item.sku}`).join(", ")}</td>
            <td>
              <span class={`badge status-${order.status}`} title={order.reason}>
                {order.status}
              </span>
            </td>
            <td>{order.notified?.replace("order_", "") ?? "–"}</td>
            <td>
              {(order.status === "PENDING" || order.status === "CONFIRMED") &&
                isOrderId(order.order_id) && (
                <form method="post" action={`/orders/${encodeURIComponent(order.order_id)}/cancel`}>
                  <button type="submit">Cancel</button>
                </form>
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Stock({ snapshot }: { snapshot: Snapshot }) {
  const stock = Object.entries(snapshot.stock ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (stock.length === 0) return <p class="hint">No stock read yet.</p>;
  return (
    <dl class="stock">
      {stock.map(([sku, count]) => (
        <div data-sku={sku}>
          <dt>{sku}</dt>
          <dd>{count}</dd>
        </div>
      ))}
    </dl>
  );
}

function Activity({ snapshot }: { snapshot: Snapshot }) {
  if (snapshot.activity.length === 0) return <p class="hint">Nothing done here yet.</p>;
  return (
    <ul class="activity">
      {snapshot.activity.map(({ at, who, what }) => (
        <li>
          <time>{at.slice(11, 19)}</time> {what} <small>by {who}</small>
        </li>
      ))}
    </ul>
  );
}

/** The panels, in the order the page lays them out. */
export const PANELS: readonly Panel[] = [
  { id: "status", render: (snapshot) => <StatusLine snapshot={snapshot} /> },
  { id: "services", render: (snapshot) => <Services snapshot={snapshot} /> },
  { id: "rates", render: (snapshot) => <Rates snapshot={snapshot} /> },
  { id: "queues", render: (snapshot) => <Queues snapshot={snapshot} /> },
  { id: "orders", render: (snapshot) => <Orders snapshot={snapshot} /> },
  { id: "stock", render: (snapshot) => <Stock snapshot={snapshot} /> },
  { id: "dead-letters", render: (snapshot) => <DeadLetters snapshot={snapshot} /> },
  { id: "deliveries", render: (snapshot) => <Deliveries snapshot={snapshot} /> },
  { id: "activity", render: (snapshot) => <Activity snapshot={snapshot} /> },
];

/** Every panel's content as HTML, by panel id. */
export function renderPanels(snapshot: Snapshot): Map<string, string> {
  return new Map(PANELS.map((panel) => [panel.id, String(panel.render(snapshot))]));
}
