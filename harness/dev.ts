/**
 * `deno task dev`: makes sure a broker answers at `AMQP_URL` (starting one if it can), then runs the
 * three services with one readable, prefixed log, and stops them cleanly on Ctrl-C.
 * @module
 */
import { join } from "node:path";
import { renderPretty } from "../shared/log.ts";
import { SERVICE_RUN_FLAGS, SERVICES, waitFor } from "./_stack.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const COLOURS = { order: "\x1b[36m", inventory: "\x1b[35m", notification: "\x1b[34m" };

/** Resolves true when something accepts TCP connections at the broker's host and port. */
async function brokerAnswers(amqpUrl: string): Promise<boolean> {
  const url = new URL(amqpUrl);
  const port = Number(url.port) || (url.protocol === "amqps:" ? 5671 : 5672);
  try {
    const conn = await Deno.connect({ hostname: url.hostname || "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
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
async function startBroker(): Promise<boolean> {
  if (await succeeds("docker", ["info"])) {
    console.log("dev: no broker answers; starting one with docker compose (compose.yaml)");
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
    console.log("dev: no broker answers; starting the local rabbitmq-server");
    return await succeeds("rabbitmq-server", ["-detached"]);
  }
  return false;
}

function pipeLog(name: keyof typeof COLOURS, stream: ReadableStream<Uint8Array>): Promise<void> {
  const prefix = `${COLOURS[name]}${name.padEnd(12)}\x1b[0m│ `;
  let buffered = "";
  return stream.pipeThrough(new TextDecoderStream()).pipeTo(
    new WritableStream({
      write(chunk) {
        buffered += chunk;
        const lines = buffered.split("\n");
        buffered = lines.pop() ?? "";
        for (const line of lines.filter(Boolean)) {
          let text = line;
          try {
            const { service: _, ...record } = JSON.parse(line);
            text = renderPretty(record);
          } catch {
            // Not a log record (a crash trace, say): show it as it is.
          }
          console.log(prefix + text);
        }
      },
    }),
  );
}

async function main(): Promise<number> {
  const amqpUrl = Deno.env.get("AMQP_URL") || "amqp://guest:guest@127.0.0.1:5672/";
  if (!(await brokerAnswers(amqpUrl))) {
    // Only a broker on this machine is ours to start.
    const local = ["127.0.0.1", "localhost", "[::1]"].includes(new URL(amqpUrl).hostname);
    if (!local || !(await startBroker())) {
      console.error(
        `dev: no RabbitMQ answers at ${
          new URL(amqpUrl).host
        }: start one with "docker compose up -d --wait" ` +
          `(or "rabbitmq-server -detached"), or set AMQP_URL to yours`,
      );
      return 1;
    }
    await waitFor("the broker to answer", () => brokerAnswers(amqpUrl), {
      timeoutMs: 90_000,
      intervalMs: 500,
    });
  }
  const envFile = join(ROOT, ".env");
  const useEnvFile = await Deno.stat(envFile).then(() => true, () => false);
  const children = SERVICES.map((name) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...SERVICE_RUN_FLAGS,
        ...(useEnvFile ? [`--env-file=${envFile}`] : []),
        join(ROOT, name, "main.ts"),
      ],
      env: { LOG_FORMAT: "json" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    pipeLog(name, child.stdout);
    pipeLog(name, child.stderr);
    return { name, child };
  });
  function stopAll(): void {
    for (const { child } of children) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
    }
  }
  Deno.addSignalListener("SIGINT", stopAll);
  Deno.addSignalListener("SIGTERM", stopAll);
  // One service dying takes the others down: a half-running system would only confuse.
  const codes = await Promise.all(children.map(async ({ name, child }) => {
    const { code } = await child.status;
    if (code !== 0) console.error(`dev: ${name} exited with code ${code}; stopping the others`);
    stopAll();
    return code;
  }));
  return codes.every((code) => code === 0) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
