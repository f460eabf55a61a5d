/**
 * A link to the broker that goes silent, packets dropped rather than refused, so that nothing tells
 * the client its connection is dead: the service must notice on its own and move to the other path
 * in `AMQP_URL`, and orders placed meanwhile are decided once each, none lost.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import { brokerTarget } from "../lib/broker_address.ts";
import { getStock, notificationKinds, placeOrder, waitReady } from "../lib/http_probes.ts";
import { INTEGRATION, withStack } from "../lib/stack.ts";
import { plainPassOnly } from "../lib/secure_mode.ts";
import { startTcpProxy, type TcpProxy, viaProxy } from "../lib/tcp_proxy.ts";
import type { ServiceName } from "../../shared/topology.ts";

const STOCK = 100;
const RUNS_HERE = plainPassOnly("silent_link_test");

for (const service of ["inventory", "order"] as const satisfies ServiceName[]) {
  Deno.test(
    `${service} leaves a silent broker link for its other path within seconds, and loses no order, against the broker`,
    { ...INTEGRATION, ignore: !RUNS_HERE },
    async () => {
      const paths = [startTcpProxy(brokerTarget()), startTcpProxy(brokerTarget())];
      try {
        await withStack({
          services: [...(["order", "inventory", "notification"] as const)].filter((name) =>
            name !== service
          ),
          env: { INVENTORY_STOCK: `burger=${STOCK}` },
        }, async (stack) => {
          const url = stack.envOf(service).AMQP_URL;
          await stack.start(service, {
            AMQP_URL: paths.map((proxy) => viaProxy(url, proxy)).join(","),
          });
          await waitReady(stack);
          const before = await placeOrder(stack, {
            user_id: "u0",
            items: [{ sku: "burger", qty: 1 }],
          });
          await waitFor(
            "the first order to be told",
            async () => (await notificationKinds(stack, before)).join() === "order_confirmed",
          );

          const inUse = paths.find((proxy) => proxy.connections > 0) as TcpProxy;
          assert.ok(inUse, "the service holds a connection through one of its paths");
          inUse.freeze();
          const frozenAt = performance.now();
          const placed: string[] = [];
          let decidedAfterMs: number | undefined;
          await waitFor("an order placed after the freeze to be told", async () => {
            placed.push(
              await placeOrder(stack, {
                user_id: `u${placed.length + 1}`,
                items: [{ sku: "burger", qty: 1 }],
              }),
            );
            for (const orderId of placed) {
              if ((await notificationKinds(stack, orderId)).join() === "order_confirmed") {
                decidedAfterMs = performance.now() - frozenAt;
                return true;
              }
            }
            return false;
          }, { timeoutMs: 20_000, intervalMs: 500 });
          console.log(
            `${service}: first decision ${Math.round(decidedAfterMs!)} ms after the freeze`,
          );

          await waitFor("every order to be told once", async () => {
            for (const orderId of placed) {
              if ((await notificationKinds(stack, orderId)).join() !== "order_confirmed") {
                return false;
              }
            }
            return true;
          }, { timeoutMs: 30_000 });
          assert.deepEqual(await getStock(stack), { burger: STOCK - 1 - placed.length });
        });
      } finally {
        for (const proxy of paths) proxy.close();
      }
    },
  );
}
