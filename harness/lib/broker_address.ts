/**
 * Where the broker the harness uses is: `AMQP_URL` and `RABBITMQ_MANAGEMENT_URL`, with the same
 * defaults as the services (a local RabbitMQ as guest).
 * @module
 */

/** A broker's AMQP and management URLs. */
export interface BrokerAddress {
  /** One node's AMQP URL, or the comma-separated URLs of a cluster's nodes. */
  amqpUrl: string;
  /** The management API of that broker, credentials included. */
  managementUrl: string;
}

/** The broker of `AMQP_URL` and `RABBITMQ_MANAGEMENT_URL`, or a local one as guest. */
export function brokerAddress(): BrokerAddress {
  return {
    amqpUrl: Deno.env.get("AMQP_URL") || "amqp://guest:guest@127.0.0.1:5672/",
    managementUrl: Deno.env.get("RABBITMQ_MANAGEMENT_URL") || "http://guest:guest@127.0.0.1:15672",
  };
}

/** The host and port of the first node of `AMQP_URL`: where a TCP proxy in front of it connects. */
export function brokerTarget(): { hostname: string; port: number } {
  const { amqpUrl } = brokerAddress();
  return { hostname: new URL(amqpUrl.split(",")[0].trim()).hostname, port: amqpPort(amqpUrl) };
}

/** The port of the first node of `amqpUrl`: 5672, or 5671 for `amqps://`, when it names none. */
export function amqpPort(amqpUrl: string): number {
  const first = new URL(amqpUrl.split(",")[0].trim());
  return Number(first.port) || (first.protocol === "amqps:" ? 5671 : 5672);
}
