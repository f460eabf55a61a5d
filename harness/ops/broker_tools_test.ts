/**
 * The broker tools against a real vhost, directly and through a proxy that stops moving bytes: a
 * tap copies what is routed, and no call waits past its deadline.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import amqp from "amqplib";
import { waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { viaProxy, withTcpProxy } from "../lib/tcp_proxy.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { EXCHANGE } from "../../shared/topology.ts";
import { connectBrokerTools } from "./broker_tools.ts";
import { createVhost, type Vhost } from "./management_api.ts";

/** A vhost of its own with the events exchange that taps bind to, as the services declare it. */
async function vhostWithExchange(): Promise<Vhost> {
  const vhost = await createVhost();
  const connection = await amqp.connect(vhost.amqpUrl);
  try {
    await (await connection.createChannel()).assertExchange(EXCHANGE, "topic", { durable: true });
  } finally {
    await connection.close();
  }
  return vhost;
}

Deno.test(
  "tap() copies what is routed on its keys and nothing else, against the broker",
  INTEGRATION,
  async () => {
    const vhost = await vhostWithExchange();
    const connection = await amqp.connect(vhost.amqpUrl);
    const tools = connectBrokerTools(vhost.amqpUrl);
    try {
      const channel = await connection.createConfirmChannel();
      const tap = await tools.tap(["order.placed"]);
      for (const key of ["order.placed", "inventory.reserved", "order.placed"]) {
        channel.publish(EXCHANGE, key, Buffer.from(key), { type: key });
      }
      await channel.waitForConfirms();
      const seen = await waitFor("both copies", () => tap.messages.length >= 2 && tap.messages);
      assert.deepEqual(seen.map((message) => message.type), ["order.placed", "order.placed"]);
      await tap.close();
    } finally {
      await tools.close();
      await connection.close();
      await vhost.delete();
    }
  },
);

Deno.test(
  "tap() rejects by its deadline when the broker stops answering on an open connection",
  INTEGRATION,
  async () => {
    const vhost = await vhostWithExchange();
    await withTcpProxy(brokerTarget(), async (proxy) => {
      const tools = connectBrokerTools(viaProxy(vhost.amqpUrl, proxy), { timeoutMs: 500 });
      try {
        // A first tap opens the connection while the link still moves bytes.
        await (await tools.tap(["#"])).close();
        proxy.freeze();
        const started = Date.now();
        await assert.rejects(tools.tap(["#"]), /within 500 ms/);
        // One deadline, not the two minutes of missed heartbeats a silent link takes to notice.
        assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
      } finally {
        proxy.restore();
        await tools.close();
      }
    });
    await vhost.delete();
  },
);
