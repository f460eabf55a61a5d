/**
 * `deno task console`: the live page of the system, at http://127.0.0.1:8000/ by default.
 *
 * It reads the services at the ports they read (`ORDER_PORT`, `INVENTORY_PORT`,
 * `NOTIFICATION_PORT`) and the broker at `AMQP_URL` and `RABBITMQ_MANAGEMENT_URL`, as they do.
 * `CONSOLE_PORT` and `CONSOLE_HOST` choose where it listens; it stays on loopback unless told
 * otherwise, and answers only IP addresses and the names in `CONSOLE_ALLOWED_HOSTS` as `Host`.
 * Run this way it only watches, places, cancels and replays: stopping and starting services is
 * offered under `deno task dev`, which owns them. With `AUTH_JWT_SECRET` or `AUTH_JWKS_URL`, as
 * the services read them, the page, its updates and each action need an admin's bearer token (a
 * browser signs in once), and `CONSOLE_TOKEN` is the admin token the console reads orders and
 * notifications with.
 * @module
 */
import { loadConfig } from "../../../shared/config.ts";
import { createLogger } from "../../../shared/log.ts";
import {
  type ConsoleAddress,
  consoleAddress,
  type RunningConsole,
  startConsole,
} from "./console.ts";
import { servicesAt } from "./services.ts";

async function main(): Promise<number> {
  let address: ConsoleAddress;
  try {
    address = consoleAddress(Deno.env.toObject());
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  const config = loadConfig("console");
  const log = createLogger("console", { level: config.logLevel });
  let console_: RunningConsole;
  try {
    console_ = await startConsole({
      ...address,
      amqpUrls: config.amqpUrls,
      managementUrl: config.managementUrl,
      retryDelaysMs: config.retryDelaysMs,
      services: servicesAt(config.ports),
      auth: config.auth,
      token: Deno.env.get("CONSOLE_TOKEN") || undefined,
      log,
    });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    console.error(
      `Cannot start the console as port ${address.port} is taken: set CONSOLE_PORT to another`,
    );
    return 1;
  }
  const stopped = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopped.resolve());
  }
  await stopped.promise;
  await console_.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
