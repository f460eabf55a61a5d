/**
 * What a person can do from the page: place and cancel an order (through the order API, as any
 * client), replay dead letters (with the code of `deno task dlq:replay`), retry a failed webhook
 * delivery (through notification's admin API), and, under
 * `deno task dev`, stop and start a service. Each is logged, and listed on the page, with who
 * asked: the remote address of the request, and the bearer token's `sub` under authentication.
 * @module
 */
import { describeError, type Logger } from "../../../shared/log.ts";
import type { Queue } from "../../../shared/topology.ts";
import type { ServiceName } from "../../../shared/topology.ts";
import type { Live } from "./live.ts";
import type { Services } from "./services.ts";

/** What an action needs. */
export interface ActionContext {
  live: Live;
  services: Services;
  log: Logger;
}

/**
 * Who asked for an action: the remote address and, when the console checks tokens, the token's
 * `sub` and the token itself, which the services' APIs are then called with.
 */
export interface Asker {
  address: string;
  sub?: string;
  token?: string;
}

/** Who asked, as log fields: `who` (the address), and `sub` when a token named one. */
function logged(asker: Asker): { who: string; sub?: string } {
  return asker.sub === undefined ? { who: asker.address } : { who: asker.address, sub: asker.sub };
}

/** Who asked, as the page's activity list shows it. */
function shown(asker: Asker): string {
  return asker.sub === undefined ? asker.address : `${asker.address} (${asker.sub})`;
}

/**
 * What follows an action that was done: the page reads the system again at once, the log gets
 * `message` with `fields` and who asked, and the page's activity list gets `what`.
 */
function done(
  context: ActionContext,
  who: Asker,
  message: string,
  fields: Record<string, unknown>,
  what: string,
): void {
  context.live.refreshNow();
  context.log.info(message, { ...fields, ...logged(who) });
  context.live.record({ who: shown(who), what });
}

/** How an action went: an HTTP status and one line for the person who asked. */
export interface ActionAnswer {
  status: 200 | 202 | 400 | 401 | 403 | 404 | 409 | 502 | 503;
  message: string;
  order_id?: string;
}

/** How long a call to a service's API may take, in milliseconds. */
const CALL_TIMEOUT_MS = 5_000;

/** An order as the form sends it. */
export interface OrderForm {
  user_id: string;
  sku: string;
  qty: number;
}

/** Places one order through the order API and shows it among the latest at once. */
export async function placeOrder(
  context: ActionContext,
  who: Asker,
  form: OrderForm,
): Promise<ActionAnswer> {
  const { live } = context;
  const items = [{ sku: form.sku, qty: form.qty }];
  const answer = await callService(context, "order", "/order", {
    token: who.token,
    body: { user_id: form.user_id, items },
  });
  if (answer.status !== 202) return answer;
  const order_id = String(answer.body.order_id);
  live.orders.add({ order_id, user_id: form.user_id, items, status: "PENDING", created_at: "" });
  done(context, who, "placed order", { order_id }, `placed order …${order_id.slice(-8)}`);
  return { status: 202, message: `Order ${order_id} accepted, PENDING`, order_id };
}

/** Cancels an order through the order API. */
export async function cancelOrder(
  context: ActionContext,
  who: Asker,
  orderId: string,
): Promise<ActionAnswer> {
  const path = `/orders/${encodeURIComponent(orderId)}/cancel`;
  const answer = await callService(context, "order", path, { token: who.token });
  if (answer.status !== 202) return answer;
  context.live.orders.touch(orderId);
  const what = `cancelled order …${orderId.slice(-8)}`;
  done(context, who, "cancelled order", { order_id: orderId }, what);
  return { status: 202, message: `Order ${orderId} cancelled`, order_id: orderId };
}

/** Replays one dead letter, one DLQ, or every DLQ. */
export async function replay(
  context: ActionContext,
  who: Asker,
  choice: { queue?: Queue; messageId?: string },
): Promise<ActionAnswer> {
  const { live, log } = context;
  const where = choice.messageId
    ? `message ${choice.messageId} of ${choice.queue}.dlq`
    : choice.queue
    ? `${choice.queue}.dlq`
    : "every DLQ";
  try {
    const replayed = await live.deadLetters.replay(choice);
    live.refreshNow();
    const ids = replayed.map((letter) => letter.message_id);
    log.info("replayed dead letters", {
      ...logged(who),
      from: where,
      count: ids.length,
      message_ids: ids,
    });
    live.record({ who: shown(who), what: `replayed ${ids.length} from ${where}` });
    return { status: 200, message: `Replayed ${ids.length} message(s) from ${where}` };
  } catch (error) {
    log.warn("cannot replay dead letters", {
      ...logged(who),
      from: where,
      error: describeError(error),
    });
    return { status: 503, message: `Cannot replay ${where}: ${describeError(error)}` };
  }
}

/**
 * Gives a failed webhook delivery another go through notification, with the asker's token: it is
 * pending again and due now.
 */
export async function retryDelivery(
  context: ActionContext,
  who: Asker,
  webhookId: string,
): Promise<ActionAnswer> {
  const path = `/deliveries/${encodeURIComponent(webhookId)}/retry`;
  const answer = await callService(context, "notification", path, { token: who.token });
  if (answer.status !== 202) return answer;
  const what = `retried delivery …${webhookId.slice(-8)}`;
  done(context, who, "retried webhook delivery", { webhook_id: webhookId }, what);
  return { status: 202, message: `Delivery ${webhookId} pending again, due now` };
}

/** Stops or starts a service, where the console may: under `deno task dev`. */
export async function controlService(
  context: ActionContext,
  who: Asker,
  request: { name: ServiceName; action: "stop" | "start" },
): Promise<ActionAnswer> {
  const { live, services, log } = context;
  const { name, action } = request;
  const control = services.control;
  if (!control) return { status: 404, message: "Services are controlled under deno task dev only" };
  if (control.running(name) === (action === "start")) {
    return {
      status: 409,
      message: `${name} is already ${action === "start" ? "running" : "stopped"}`,
    };
  }
  // `name`, not `service`: that field says whose log line it is.
  log.info(action === "stop" ? "stopping service" : "starting service", { name, ...logged(who) });
  try {
    await control[action](name);
  } catch (error) {
    log.warn(`cannot ${action} service`, { name, ...logged(who), error: describeError(error) });
    return { status: 502, message: `Cannot ${action} ${name}: ${describeError(error)}` };
  } finally {
    live.refreshNow();
  }
  live.record({ who: shown(who), what: `${action === "stop" ? "stopped" : "started"} ${name}` });
  return { status: 200, message: `${action === "stop" ? "Stopped" : "Started"} ${name}` };
}

/**
 * POSTs `body` (if any) to `service`'s API, with the asker's bearer `token` (if any), and reads
 * its JSON answer.
 */
async function callService(
  context: ActionContext,
  service: "order" | "notification",
  path: string,
  request: { body?: unknown; token?: string },
): Promise<ActionAnswer & { body: Record<string, unknown> }> {
  const { body, token } = request;
  const baseUrl = context.services.url(service);
  if (!baseUrl) return { status: 503, message: `The ${service} service is not running`, body: {} };
  const headers = new Headers();
  if (body !== undefined) headers.set("content-type", "application/json");
  if (token !== undefined) headers.set("authorization", `Bearer ${token}`);
  try {
    const response = await fetch(baseUrl + path, {
      method: "POST",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
    const answer = await response.json() as Record<string, unknown>;
    const status = [202, 400, 401, 403, 404, 409].includes(response.status)
      ? response.status as ActionAnswer["status"]
      : 502;
    return {
      status,
      message: String(answer.error ?? answer.status ?? response.status),
      body: answer,
    };
  } catch (error) {
    return {
      status: 502,
      message: `The ${service} service did not answer: ${describeError(error)}`,
      body: {},
    };
  }
}
