/**
 * The first step of `deno task test`: a broker at `AMQP_URL` and its management API at
 * `RABBITMQ_MANAGEMENT_URL`, started or enabled here where they can be, or one line saying how.
 * @module
 */
import { ensureBroker, ensureManagementApi } from "../lib/broker_check.ts";

if (import.meta.main) {
  const amqpUrl = Deno.env.get("AMQP_URL") || "amqp://guest:guest@127.0.0.1:5672/";
  const managementUrl = Deno.env.get("RABBITMQ_MANAGEMENT_URL") ||
    "http://guest:guest@127.0.0.1:15672";
  const ready = await ensureBroker(amqpUrl, "test") &&
    await ensureManagementApi(managementUrl, { who: "test" });
  Deno.exit(ready ? 0 : 1);
}
