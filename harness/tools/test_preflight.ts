/**
 * The first step of `deno task test`: a broker at `AMQP_URL` and its management API at
 * `RABBITMQ_MANAGEMENT_URL`, started or enabled here where they can be, or one line saying how;
 * and one line saying how to install Chromium when the console's browser test cannot find it.
 * @module
 */
import { ensureBroker, ensureManagementApi } from "../lib/broker_check.ts";
import { brokerAddress } from "../lib/broker_address.ts";
import { CHROMIUM_HINT, findChromium } from "./console/chromium.ts";

if (import.meta.main) {
  const { amqpUrl, managementUrl } = brokerAddress();
  const ready = await ensureBroker(amqpUrl, "test") &&
    await ensureManagementApi(managementUrl, { who: "test" });
  if (!findChromium()) {
    console.log(`test: ${CHROMIUM_HINT}; the console's browser test will be skipped`);
  }
  Deno.exit(ready ? 0 : 1);
}
