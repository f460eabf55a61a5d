/**
 * One host's clock must not decide an order: each service in turn runs minutes ahead of or behind
 * the others (libfaketime, `LD_PRELOAD` on that service alone), and every order is still confirmed
 * once, told once, with stock exact. Skipped with one line where libfaketime is not installed.
 */
import assert from "node:assert/strict";
import { waitFor } from "../lib/async.ts";
import {
  getStock,
  notificationKinds,
  orderStatus,
  placeOrder,
  reservationOf,
} from "../lib/http_probes.ts";
import { stackTest } from "../lib/stack.ts";
import { plainPassOnly } from "../lib/secure_mode.ts";
import type { ServiceName } from "../../shared/topology.ts";

const ORDERS = 5;
const STOCK = 20;

/** Debian's and Ubuntu's places for the library `faketime` preloads. */
const LIBFAKETIME = [
  "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
  "/usr/lib/faketime/libfaketime.so.1",
].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});
if (!LIBFAKETIME) {
  console.log("clock skew tests: libfaketime is not installed (apt-get install faketime); skipped");
}
const RUNS_HERE = LIBFAKETIME !== undefined && plainPassOnly("clock_skew_test");

/** The environment that moves one process's clock by `offset` (`+3m`, `-3m`). */
function skewed(offset: string): Record<string, string> {
  return {
    LD_PRELOAD: LIBFAKETIME ?? "",
    FAKETIME: offset,
    // Timers and the event loop keep the real monotonic clock: only the wall clock is skewed.
    FAKETIME_DONT_FAKE_MONOTONIC: "1",
    FAKETIME_NO_CACHE: "1",
  };
}

for (const service of ["inventory", "order", "notification"] as const satisfies ServiceName[]) {
  for (const offset of ["+3m", "-3m"]) {
    stackTest(
      `${service}'s clock ${offset} off the others' fails, expires and doubles nothing, against the broker`,
      {
        ignore: !RUNS_HERE,
        env: { ORDER_DECISION_TIMEOUT: "120s", INVENTORY_STOCK: `burger=${STOCK}` },
        serviceEnv: { [service]: skewed(offset) },
      },
      async (stack) => {
        const orderIds: string[] = [];
        for (let i = 0; i < ORDERS; i++) {
          orderIds.push(
            await placeOrder(stack, { user_id: `u${i}`, items: [{ sku: "burger", qty: 2 }] }),
          );
        }
        await waitFor("every order to be told its confirmation", async () => {
          for (const orderId of orderIds) {
            if ((await notificationKinds(stack, orderId)).join() !== "order_confirmed") {
              return false;
            }
          }
          return true;
        });
        for (const orderId of orderIds) {
          assert.equal(await orderStatus(stack, orderId), "CONFIRMED");
          assert.equal((await reservationOf(stack, orderId))?.status, "RESERVED");
        }
        assert.deepEqual(await getStock(stack), { burger: STOCK - 2 * ORDERS });
      },
    );
  }
}
