/**
 * The first step of `deno task test`: a broker at `AMQP_URL` and its management API at
 * `RABBITMQ_MANAGEMENT_URL`, started or enabled here where they can be, or one line saying how.
 * @module
 */
import { ensureBroker, ensureManagementApi } from "../lib/broker_check.ts";
import { brokerAddress } from "../lib/broker_address.ts";

if (import.meta.main) {
  const { amqpUrl, managementUrl } = brokerAddress();
  const ready = await ensureBroker(amqpUrl, "test") &&
    await ensureManagementApi(managementUrl, { who: "test" });
  Deno.exit(ready ? 0 : 1);
}
