/**
 * `deno task broker:setup` readies the vhost of `AMQP_URL` for services that run with least
 * privilege: a broker user per service (`campus-food-order`, `campus-food-inventory`,
 * `campus-food-notification`), each allowed only what that service does, and the whole topology,
 * in one import of definitions through the management API with an administrator's credentials
 * (those of `RABBITMQ_MANAGEMENT_URL`). `--definitions FILE` writes the same definitions to a file
 * instead, for a broker that loads them at boot, as compose.yaml's does (`rabbitmq/`).
 *
 * ```sh
 * BROKER_ORDER_PASSWORD=… BROKER_INVENTORY_PASSWORD=… BROKER_NOTIFICATION_PASSWORD=… \
 *   deno task broker:setup [--definitions FILE] [--dev]
 * ```
 *
 * `--dev` makes a development broker's: a password left unset is the user's name, and `guest`
 * (password `guest`) is an administrator, as on a fresh broker.
 * @module
 */
import { loadConfig } from "../../shared/config.ts";
import { describeError } from "../../shared/log.ts";
import { redact } from "../../shared/redact.ts";
import { managementApi } from "../lib/management_api.ts";
import { type ServiceName, SERVICES } from "../lib/service_process.ts";
import { readCommandLine } from "../lib/command_line.ts";
import {
  brokerDefinitions,
  type BrokerUser,
  type DefinitionsOptions,
  passwordVariable,
  serviceUserName,
  setUpBroker,
} from "../lib/broker_definitions.ts";

async function main(): Promise<number> {
  const { values } = readCommandLine(Deno.args, {
    tool: "broker:setup",
    options: { definitions: { type: "string" }, dev: { type: "boolean" } },
  });
  const dev = values.dev === true;
  const config = loadConfig("broker:setup");
  const users = {} as Record<ServiceName, BrokerUser>;
  for (const service of SERVICES) {
    const name = serviceUserName(service);
    const password = Deno.env.get(passwordVariable(service)) || (dev ? name : undefined);
    if (!password) {
      console.error(
        `Cannot set up the broker as ${passwordVariable(service)} must hold the password of ` +
          `${name}: current value is unset (or pass --dev for a development broker)`,
      );
      return 1;
    }
    users[service] = { name, password };
  }
  const vhost = decodeURIComponent(new URL(config.amqpUrls[0]).pathname.slice(1)) || "/";
  const options: DefinitionsOptions = {
    vhost,
    users,
    retryDelaysMs: config.retryDelaysMs,
    administrators: dev ? [{ name: "guest", password: "guest" }] : [],
  };
  if (typeof values.definitions === "string") {
    const text = JSON.stringify(await brokerDefinitions(options), null, 2) + "\n";
    await Deno.writeTextFile(values.definitions, text);
    console.log(`Wrote the definitions of vhost ${vhost} to ${values.definitions}`);
    return 0;
  }
  try {
    await setUpBroker(managementApi(config.managementUrl), options);
  } catch (error) {
    console.error(`Cannot set up the broker: ${redact(describeError(error))}`);
    return 1;
  }
  console.log(
    `Set up vhost ${vhost} at ${redact(config.managementUrl)}: users ` +
      `${SERVICES.map((s) => users[s].name).join(", ")}, their permissions, and the topology`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
