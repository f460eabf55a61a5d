/**
 * The RabbitMQ management API, and the vhost of its own that every stack makes with it: tests and
 * scenarios never share queues, and deleting the vhost removes everything they declared.
 * @module
 */
import { type BrokerAddress, brokerAddress } from "../lib/broker_address.ts";

/** A call to the RabbitMQ management API: the parsed JSON answer, or undefined for an empty one. */
export type ManagementApi = (method: string, path: string, body?: unknown) => Promise<unknown>;

/** The management API answered a call with an error status. */
export class ManagementApiError extends Error {
  override name = "ManagementApiError";
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/** Options for {@linkcode managementApi}. */
export interface ManagementApiOptions {
  /** How long one call may take, in milliseconds: a node that hangs fails the call. @default {10000} */
  timeoutMs?: number;
}

/**
 * Calls the RabbitMQ management API at `managementUrl` (credentials in the URL).
 * @throws {ManagementApiError} naming the call when the API answers an error status
 * @throws {Error} when nothing answers in time
 */
export function managementApi(
  managementUrl: string = brokerAddress().managementUrl,
  options: ManagementApiOptions = {},
): ManagementApi {
  const { timeoutMs = 10_000 } = options;
  const url = new URL(managementUrl);
  const auth = "Basic " +
    btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  url.username = url.password = "";
  const base = url.toString().replace(/\/$/, "");
  return async function call(method, path, body) {
    const response = await fetch(base + path, {
      method,
      headers: { authorization: auth, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new ManagementApiError(
        `Management API ${method} ${path} answered ${response.status}: ${text.slice(0, 200)}`,
        response.status,
      );
    }
    return text ? JSON.parse(text) : undefined;
  };
}

/** A vhost of its own on the broker. */
export interface Vhost {
  name: string;
  /** Its URL, or the comma-separated URLs of a cluster's nodes: what a service gets as `AMQP_URL`. */
  amqpUrl: string;
  delete(): Promise<void>;
}

/**
 * Creates a uniquely named vhost that the user of `AMQP_URL` may use, on the broker of `AMQP_URL`
 * and `RABBITMQ_MANAGEMENT_URL` or at `address`.
 */
export async function createVhost(address: Partial<BrokerAddress> = {}): Promise<Vhost> {
  const { amqpUrl, managementUrl } = { ...brokerAddress(), ...address };
  const api = managementApi(managementUrl);
  const name = `campus-food-test-${crypto.randomUUID().slice(0, 8)}`;
  const nodes = amqpUrl.split(",").map((url) => new URL(url.trim()));
  const user = nodes[0].username || "guest";
  await api("PUT", `/api/vhosts/${name}`);
  await api("PUT", `/api/permissions/${name}/${encodeURIComponent(user)}`, {
    configure: ".*",
    write: ".*",
    read: ".*",
  });
  for (const url of nodes) url.pathname = `/${name}`;
  return {
    name,
    amqpUrl: nodes.map((url) => url.toString()).join(","),
    delete: () => api("DELETE", `/api/vhosts/${name}`).then(() => {}),
  };
}
