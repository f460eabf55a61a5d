/**
 * Making sure the broker the harness needs is there before anything runs: its AMQP port for
 * `deno task dev`, and its management API as well for `deno task test`. What can be started or
 * enabled on this machine is; otherwise one line says what to do, instead of a wall of failures.
 * @module
 */
import { join } from "node:path";
import { waitFor } from "./async.ts";
import { amqpPort } from "./broker_address.ts";
import { createVhost, managementApi, ManagementApiError } from "../ops/management_api.ts";
// The raw client: this checks the broker itself, before any of the project's code runs on it.
import amqp from "amqplib";

const ROOT = new URL("../..", import.meta.url).pathname;
const LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"];

/** Resolves true when something accepts TCP connections at one of the nodes of `amqpUrls`. */
export async function brokerAnswers(amqpUrls: string): Promise<boolean> {
  for (const node of amqpUrls.split(",").map((url) => new URL(url.trim()))) {
    try {
      const port = amqpPort(node.toString());
      (await Deno.connect({ hostname: node.hostname || "127.0.0.1", port })).close();
      return true;
    } catch {
      // The next node, if any.
    }
  }
  return false;
}

async function succeeds(command: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

/** Starts a broker with Docker Compose or a local rabbitmq-server; false when neither is there. */
async function startBroker(who: string): Promise<boolean> {
  if (await succeeds("docker", ["info"])) {
    console.log(`${who}: no broker answers; starting one with docker compose (compose.yaml)`);
    return await succeeds("docker", [
      "compose",
      "-f",
      join(ROOT, "compose.yaml"),
      "up",
      "-d",
      "--wait",
    ]);
  }
  if (await succeeds("sh", ["-c", "command -v rabbitmq-server"])) {
    console.log(`${who}: no broker answers; starting the local rabbitmq-server`);
    return await succeeds("rabbitmq-server", ["-detached"]);
  }
  return false;
}

/**
 * Resolves true once a broker answers at `amqpUrls`, starting one on this machine when the URL
 * names this machine and nothing answers; false, after one line saying what to do, when it cannot.
 * `who` prefixes the lines: the task's name.
 */
export async function ensureBroker(amqpUrls: string, who: string): Promise<boolean> {
  if (await brokerAnswers(amqpUrls)) return true;
  const first = new URL(amqpUrls.split(",")[0].trim());
  // Only a broker on this machine is ours to start.
  if (!LOCAL_HOSTS.includes(first.hostname) || !(await startBroker(who))) {
    console.error(
      `${who}: no RabbitMQ answers at ${first.host}: start one with "docker compose up -d --wait" ` +
        `(or "rabbitmq-server -detached"), or set AMQP_URL to yours`,
    );
    return false;
  }
  await waitFor("the broker to answer", () => brokerAnswers(amqpUrls), {
    timeoutMs: 90_000,
    intervalMs: 500,
  });
  return true;
}

/** Why the management API at `managementUrl` does not serve, or undefined when it does. */
export async function managementProblem(managementUrl: string): Promise<string | undefined> {
  try {
    await managementApi(managementUrl, { timeoutMs: 5000 })("GET", "/api/overview");
    return undefined;
  } catch (error) {
    if (!(error instanceof ManagementApiError)) return "nothing answers";
    return error.status === 401
      ? `it refuses the user "${decodeURIComponent(new URL(managementUrl).username)}" (401)`
      : `it answers ${error.status}`;
  }
}

/** Options for {@linkcode ensureManagementApi}. */
export interface EnsureManagementOptions {
  /** Prefixes the lines: the task's name. */
  who: string;
  /** Enable the plugin with `rabbitmq-plugins` when the API is on this machine and off. @default {true} */
  mayEnable?: boolean;
}

/**
 * Resolves true once the management API at `managementUrl` serves, enabling the plugin on this
 * machine when it is off; false, after one line saying how to turn it on, when it cannot.
 */
export async function ensureManagementApi(
  managementUrl: string,
  options: EnsureManagementOptions,
): Promise<boolean> {
  const { who, mayEnable = true } = options;
  const problem = await managementProblem(managementUrl);
  if (problem === undefined) return true;
  const { host, hostname } = new URL(managementUrl);
  const local = LOCAL_HOSTS.includes(hostname);
  if (problem === "nothing answers" && local && mayEnable) {
    console.log(
      `${who}: enabling the RabbitMQ management plugin (rabbitmq-plugins enable rabbitmq_management)`,
    );
    if (await succeeds("rabbitmq-plugins", ["enable", "rabbitmq_management"])) {
      const served = await waitFor(
        "the management API",
        async () => (await managementProblem(managementUrl)) === undefined,
        { timeoutMs: 60_000, intervalMs: 500 },
      ).catch(() => false);
      if (served) return true;
    }
  }
  console.error(
    `${who}: the RabbitMQ management API at ${host} does not serve (${problem}), and the tests need ` +
      `it to make a vhost each: run "rabbitmq-plugins enable rabbitmq_management" on the broker, or ` +
      `set RABBITMQ_MANAGEMENT_URL to it`,
  );
  return false;
}

/**
 * Why the broker cannot run the project's quorum queues, or undefined when it can: a quorum queue
 * with at-least-once dead-lettering is declared in a vhost of its own and deleted. RabbitMQ 3.10
 * can lose the supervisor of that dead-lettering after queues are deleted while they start (many
 * short test vhosts), and then refuses every such queue with `INTERNAL_ERROR`: a whole test run
 * would time out test by test instead of saying so once.
 */
export async function quorumQueueProblem(): Promise<string | undefined> {
  const vhost = await createVhost();
  const connection = await amqp.connect(vhost.amqpUrl).catch((error: Error) => error);
  try {
    if (connection instanceof Error) return `cannot connect: ${connection.message}`;
    connection.on("error", () => {});
    const channel = await connection.createChannel();
    channel.on("error", () => {});
    await channel.assertQueue("preflight", {
      durable: true,
      arguments: {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
      },
    });
    return undefined;
  } catch (error) {
    return String((error as Error).message ?? error);
  } finally {
    if (!(connection instanceof Error)) await connection.close().catch(() => {});
    await vhost.delete().catch(() => {});
  }
}

/**
 * RabbitMQ 3.10 loses its dead-letter supervisor when too many of its workers stop at once, as when
 * a vhost full of quorum queues is deleted: every quorum queue with at-least-once dead-lettering
 * declared after that is refused (541 INTERNAL_ERROR). Starts the supervisor again on this
 * machine's node, where `rabbitmqctl` can reach it; true if it did.
 */
export async function restartDeadLetterSupervisor(): Promise<boolean> {
  try {
    const { success, stdout } = await new Deno.Command("rabbitmqctl", {
      args: ["eval", "supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup)."],
      stdout: "piped",
      stderr: "null",
    }).output();
    return success && new TextDecoder().decode(stdout).includes("{ok,");
  } catch {
    return false;
  }
}

/**
 * Why the broker cannot run the project's quorum queues, or undefined; where the cause is the lost
 * dead-letter supervisor of RabbitMQ 3.10, it is started again first and `said` is told so.
 */
export async function deadLetteringProblem(
  said: (line: string) => void,
): Promise<string | undefined> {
  const problem = await quorumQueueProblem();
  if (!problem || !await restartDeadLetterSupervisor()) return problem;
  said(
    `the broker had lost its dead-letter supervisor (RabbitMQ 3.10, after many quorum queues ` +
      `were deleted at once: ${problem}); started it again`,
  );
  return await quorumQueueProblem();
}

/** When the machine's broker last showed it could dead-letter, in milliseconds since the epoch. */
let deadLetteringCheckedAt = 0;

/**
 * Checks, at most every 15 s, that the machine's broker can still declare the project's quorum
 * queues: on RabbitMQ 3.10 test vhosts coming and going can cost it its dead-letter supervisor,
 * which is then started again rather than failing every test after it. For whatever makes a vhost
 * of its own on that broker and declares the topology there: `what` names it in the error.
 * @throws {Error} when the broker still cannot declare one
 */
export async function keepDeadLettering(what: string): Promise<void> {
  if (Date.now() - deadLetteringCheckedAt < 15_000) return;
  deadLetteringCheckedAt = Date.now();
  const problem = await deadLetteringProblem((line) => console.log(`harness: ${line}`));
  if (problem) {
    throw new Error(`Cannot start ${what} as the broker cannot declare a quorum queue: ${problem}`);
  }
}
