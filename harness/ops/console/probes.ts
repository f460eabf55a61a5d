/**
 * What the console reads, each one HTTP call with a deadline: a service's `/ready`, `/stock`,
 * `/metrics`, an order and its notifications, and the vhost's queues from the management API.
 * @module
 */
import type { ManagementApi } from "../management_api.ts";
import { describeError } from "../../../shared/log.ts";

/** How long one read may take, in milliseconds: a hung service must not stall the page. */
const READ_TIMEOUT_MS = 2_000;

/**
 * GETs `url`, with a bearer `token` if given, and parses its JSON body, whatever the status.
 * @throws {Error} naming the URL when nothing answered in time, or the body is not JSON
 */
export async function getJson(
  url: string,
  options: { token?: string } = {},
): Promise<{ status: number; body: unknown }> {
  const headers: HeadersInit = options.token ? { authorization: `Bearer ${options.token}` } : {};
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
  try {
    return { status: response.status, body: await response.json() };
  } catch (cause) {
    throw new Error(`Cannot read ${url} as its answer is not JSON`, { cause });
  }
}

/** GETs `url` as text. @throws {Error} on an error status or when nothing answered in time */
export async function getText(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(READ_TIMEOUT_MS) });
  const text = await response.text();
  if (!response.ok) throw new Error(`Cannot read ${url}: it answered ${response.status}`);
  return text;
}

/**
 * Reads `path` of the service at `baseUrl` with `get`, or nothing while the service does not run:
 * the services panel says so already.
 */
export function readService<T>(
  baseUrl: string | undefined,
  path: string,
  get: (url: string) => Promise<T>,
): Promise<T | undefined> {
  return baseUrl ? get(baseUrl + path) : Promise.resolve(undefined);
}

/** A service's state as `/ready` tells it, or `down` when nothing answers. */
export interface Readiness {
  state: "ready" | "not ready" | "down";
  /** What failed: the `/ready` body's `failed` map, or why nothing answered. */
  detail?: string;
}

/** Asks `baseUrl`'s `/ready`. Never throws: a service that does not answer is `down`. */
export async function readReadiness(baseUrl: string): Promise<Readiness> {
  try {
    const { status, body } = await getJson(`${baseUrl}/ready`);
    if (status === 200) return { state: "ready" };
    const failed = (body as { failed?: Record<string, string> })?.failed ?? {};
    const detail = Object.entries(failed).map(([what, why]) => `${what}: ${why}`).join("; ");
    return { state: "not ready", detail: detail || `answered ${status}` };
  } catch (error) {
    return { state: "down", detail: describeError(error) };
  }
}

/** One queue of the vhost, as the management API counts it. */
export interface QueueDepth {
  name: string;
  ready: number;
  unacked: number;
  consumers: number;
}

interface ManagementQueue {
  name: string;
  exclusive?: boolean;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
}

/**
 * The queues of `vhost`, by name, leaving out exclusive ones: taps (the console's own too) are
 * private copies of the traffic, not part of the system.
 */
export async function readQueues(api: ManagementApi, vhost: string): Promise<QueueDepth[]> {
  const columns = "name,exclusive,messages_ready,messages_unacknowledged,consumers";
  const queues = await api(
    "GET",
    `/api/queues/${encodeURIComponent(vhost)}?columns=${columns}`,
  ) as ManagementQueue[];
  return queues.filter((queue) => !queue.exclusive).map((queue) => ({
    name: queue.name,
    ready: queue.messages_ready ?? 0,
    unacked: queue.messages_unacknowledged ?? 0,
    consumers: queue.consumers ?? 0,
  })).sort((a, b) => a.name.localeCompare(b.name));
}

/** The vhost named by the path of an AMQP URL: `amqp://host/` is `/`, `amqp://host/x%2Fy` is `x/y`. */
export function vhostOf(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname.slice(1);
  return path === "" ? "/" : decodeURIComponent(path);
}
