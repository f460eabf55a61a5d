/**
 * `deno task broker:setup` readies the vhost of `AMQP_URL` for services that run with least
 * privilege: a broker user per service (`campus-food-order`, `campus-food-inventory`,
 * `campus-food-notification`), each allowed only what that service does, the operator's user
 * (`campus-food-operator`) of `deno task dlq`, `dlq:replay` and the console, and the whole topology,
 * in one import of definitions through the management API with an administrator's credentials
 * (those of `RABBITMQ_MANAGEMENT_URL`). `--definitions FILE` writes the same definitions to a file
 * instead, for a broker that loads them at boot, as compose.yaml's does (`rabbitmq/`).
 *
 * ```sh
 * BROKER_ORDER_PASSWORD=… BROKER_INVENTORY_PASSWORD=… BROKER_NOTIFICATION_PASSWORD=… \
 * BROKER_OPERATOR_PASSWORD=… deno task broker:setup [--definitions FILE] [--dev]
 * ```
 *
 * `--dev` makes a development broker's: a password left unset is the user's name, and `guest`
 * (password `guest`) is an administrator, as on a fresh broker.
 *
 * RabbitMQ before 4.0.3 does not hold `CC` and `BCC` headers to topic permissions, so there a
 * service's user can route its messages into queues it should not reach; the consumers dead-letter
 * them (`shared/origin.ts`), and the tool says so in one line when it finds such a broker.
 *
 * The alerts on queues, dead letters, alarms and nodes read the broker's own metrics (the
 * `rabbitmq_prometheus` plugin, port 15692). A plugin cannot be enabled through the management API,
 * so the tool checks that the endpoint answers and, when it does not, says in one line how to
 * enable it.
 * @module
 */
import { loadConfig } from "../../shared/config.ts";
import { describeError } from "../../shared/log.ts";
import { redact } from "../../shared/redact.ts";
import { managementApi } from "./management_api.ts";
import { type ServiceName, SERVICES } from "../../shared/topology.ts";
import { readCommandLine } from "../lib/command_line.ts";
import {
  brokerDefinitions,
  type BrokerUser,
  type DefinitionsOptions,
  passwordVariable,
  setUpBroker,
  USER_PREFIX,
} from "./broker_definitions.ts";
import { brokerUserOf, OPERATOR } from "../../shared/origin.ts";
import type { ManagementApi } from "./management_api.ts";
import {
  brokerMetricsHint,
  brokerMetricsProblem,
  brokerMetricsUrl,
} from "../lib/broker_metrics.ts";

/** Whom the tool makes a broker user for. */
const ROLES: ReadonlyArray<ServiceName | typeof OPERATOR> = [...SERVICES, OPERATOR];

/** The first RabbitMQ release that holds `CC`/`BCC` headers to topic permissions. */
const CC_CHECKED_SINCE = [4, 0, 3];

/**
 * A line of warning when the broker of `api` lets `CC`/`BCC` headers past topic permissions, or
 * undefined when it does not.
 */
export async function ccWarning(api: ManagementApi): Promise<string | undefined> {
  const { rabbitmq_version: version } = await api("GET", "/api/overview") as {
    rabbitmq_version?: string;
  };
  const parts = String(version ?? "").split(/[.-]/).slice(0, 3).map(Number);
  const older = CC_CHECKED_SINCE.findIndex((part, i) => (parts[i] || 0) !== part);
  if (older === -1 || (parts[older] || 0) > CC_CHECKED_SINCE[older]) return undefined;
  return `Warning: RabbitMQ ${version} does not hold CC/BCC headers to topic permissions (fixed ` +
    `in 4.0.3): a service's user can route messages into other services' queues, where the ` +
    `consumers dead-letter them as an untrusted publisher's (docs/security.md); upgrade the broker`;
}

async function main(): Promise<number> {
  const { values } = readCommandLine(Deno.args, {
    tool: "broker:setup",
    options: { definitions: { type: "string" }, dev: { type: "boolean" } },
  });
  const dev = values.dev === true;
  const config = loadConfig("broker:setup");
  const users = {} as Record<ServiceName | typeof OPERATOR, BrokerUser>;
  for (const role of ROLES) {
    const name = brokerUserOf(role, USER_PREFIX);
    const password = Deno.env.get(passwordVariable(role)) || (dev ? name : undefined);
    if (!password) {
      console.error(
        `Cannot set up the broker as ${passwordVariable(role)} must hold the password of ` +
          `${name}: current value is unset (or pass --dev for a development broker)`,
      );
      return 1;
    }
    users[role] = { name, password };
  }
  const vhost = decodeURIComponent(new URL(config.amqpUrls[0]).pathname.slice(1)) || "/";
  const options: DefinitionsOptions = {
    vhost,
    users,
    operator: users[OPERATOR],
    retryDelaysMs: config.retryDelaysMs,
    administrators: dev ? [{ name: "guest", password: "guest" }] : [],
  };
  if (typeof values.definitions === "string") {
    const text = JSON.stringify(await brokerDefinitions(options), null, 2) + "\n";
    await Deno.writeTextFile(values.definitions, text);
    console.log(`Wrote the definitions of vhost ${vhost} to ${values.definitions}`);
    return 0;
  }
  const api = managementApi(config.managementUrl);
  try {
    await setUpBroker(api, options);
    const warning = await ccWarning(api);
    if (warning) console.error(warning);
    const metricsUrl = brokerMetricsUrl(config.managementUrl);
    const problem = await brokerMetricsProblem(metricsUrl);
    if (problem) console.error(`Warning: ${brokerMetricsHint(metricsUrl, problem)}`);
  } catch (error) {
    console.error(`Cannot set up the broker: ${redact(describeError(error))}`);
    return 1;
  }
  console.log(
    `Set up vhost ${vhost} at ${redact(config.managementUrl)}: users ` +
      `${ROLES.map((role) => users[role].name).join(", ")}, their ` +
      `permissions, and the topology`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
