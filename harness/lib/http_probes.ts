/**
 * The HTTP probes every test, scenario and the benchmark use to drive the services and see what
 * they did: place and cancel orders, read an order, a reservation, the stock, the notifications,
 * `/ready` and `/metrics`. Every request has a deadline, so a service that stops answering fails
 * the step instead of hanging it.
 * @module
 */
import type { Notification } from "../../notification/notifications.ts";
import { waitFor, type WaitOptions } from "./async.ts";
import type { Stack } from "./stack.ts";
import { withHarnessAuth } from "./secure_mode.ts";

/** How long one HTTP request to a service may take, in milliseconds. */
export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * `fetch` with a deadline. In the harness's secure mode it carries an admin's bearer token, unless
 * `init` holds a token of its own.
 * @throws {Error} naming the request when no answer came in time
 */
export async function request(url: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(url, {
      ...init,
      headers: await withHarnessAuth(init.headers),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (cause) {
    throw new Error(
      `Cannot ${init.method ?? "GET"} ${url} as it did not answer within ${REQUEST_TIMEOUT_MS} ms`,
      { cause },
    );
  }
}

/** An answer with a JSON body, or `body` undefined when it was not JSON. */
export interface JsonAnswer {
  status: number;
  // deno-lint-ignore no-explicit-any -- the callers check the fields they use
  body: any;
}

/** Requests `url` and reads its JSON answer. */
export async function getJson(url: string, init?: RequestInit): Promise<JsonAnswer> {
  const response = await request(url, init);
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) };
  } catch {
    return { status: response.status, body: undefined };
  }
}

/** The status of `GET url`, with the body discarded. */
export async function statusOf(url: string): Promise<number> {
  const response = await request(url);
  await response.body?.cancel();
  return response.status;
}

/** Waits until every running service of `stack` answers `/ready` with 200. */
export async function waitReady(stack: Stack, deadlineMs = 15_000): Promise<void> {
  await waitFor("every service to be ready", async () => {
    const statuses = await Promise.all(
      Object.values(stack.services).map((service) => statusOf(`${service.url}/ready`)),
    );
    return statuses.every((status) => status === 200);
  }, { timeoutMs: deadlineMs });
}

/**
 * The sum of the samples of metric `name` in the Prometheus text `text` whose labels include every
 * pair of `labels`, or undefined when there is none (a counter is written once it moved).
 */
export function metricSample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) {
      sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

/** {@linkcode metricSample} of the `/metrics` of the service at `serviceUrl`, 0 when there is none. */
export async function readMetric(
  serviceUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await request(`${serviceUrl}/metrics`)).text();
  return metricSample(text, name, labels) ?? 0;
}

/** An order as `POST /order` takes it. */
export interface OrderRequest {
  user_id: string;
  items: Array<{ sku: string; qty: number }>;
}

/** `POST /order` with `order` (as it is when a string), and `headers` besides the content type. */
export function postOrder(
  orderUrl: string,
  order: OrderRequest | string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return request(`${orderUrl}/order`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof order === "string" ? order : JSON.stringify(order),
  });
}

/**
 * Places `order` over HTTP.
 * @returns the new order's id
 * @throws {Error} when the order service does not answer 202
 */
export async function placeOrder(stack: Stack, order: OrderRequest): Promise<string> {
  const response = await postOrder(stack.url("order"), order);
  const text = await response.text();
  if (response.status !== 202) {
    throw new Error(`Cannot place an order as POST /order answered ${response.status}: ${text}`);
  }
  return JSON.parse(text).order_id;
}

/** `POST /orders/{orderId}/cancel`, and its answer. */
export function cancelOrder(stack: Stack, orderId: string): Promise<JsonAnswer> {
  return getJson(`${stack.url("order")}/orders/${orderId}/cancel`, { method: "POST" });
}

/** The order's status at the order service, or undefined when it does not know the order. */
export async function orderStatus(stack: Stack, orderId: string): Promise<string | undefined> {
  return (await getJson(`${stack.url("order")}/orders/${orderId}`)).body?.status;
}

/** Waits until the order is `status`. */
export async function waitForStatus(
  stack: Stack,
  orderId: string,
  status: string,
): Promise<void> {
  await waitFor(
    `order ${orderId} to be ${status}`,
    async () => await orderStatus(stack, orderId) === status,
  );
}

/** Waits until the order is decided (no longer PENDING), and returns its status. */
export function waitDecided(
  stack: Stack,
  orderId: string,
  options: WaitOptions = {},
): Promise<string> {
  return waitFor(`order ${orderId} to be decided`, async () => {
    const status = await orderStatus(stack, orderId);
    return status !== "PENDING" && status;
  }, options);
}

/** The order's reservation as inventory shows it, or undefined when it has none. */
export async function reservationOf(
  stack: Stack,
  orderId: string,
): Promise<{ status: string; reason?: string; items: OrderRequest["items"] } | undefined> {
  const { status, body } = await getJson(`${stack.url("inventory")}/reservations/${orderId}`);
  return status === 200 ? body : undefined;
}

/** The notifications recorded for `orderId`, oldest first. */
export async function notificationsOf(stack: Stack, orderId: string): Promise<Notification[]> {
  const { body } = await getJson(
    `${stack.url("notification")}/notifications?order_id=${orderId}`,
  );
  return Array.isArray(body) ? body : [];
}

/** The kinds of the notifications recorded for `orderId`, oldest first. */
export async function notificationKinds(stack: Stack, orderId: string): Promise<string[]> {
  return (await notificationsOf(stack, orderId)).map((notification) => notification.kind);
}

/** How many notifications the notification service recorded for `orderId`. */
export async function notificationCount(stack: Stack, orderId: string): Promise<number> {
  return (await notificationsOf(stack, orderId)).length;
}

/** Inventory's stock per SKU. */
export async function getStock(stack: Stack): Promise<Record<string, number>> {
  return (await getJson(`${stack.url("inventory")}/stock`)).body;
}
