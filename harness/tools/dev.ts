/**
 * `deno task dev`: makes sure a broker answers at `AMQP_URL` (starting one if it can), then runs
 * the three services with one readable, prefixed log, and stops them cleanly on Ctrl-C.
 * @module
 */
import { join } from "node:path";
import { renderPretty } from "../../shared/log.ts";
import { ensureBroker } from "../lib/broker_check.ts";
import { brokerAddress } from "../lib/broker_address.ts";
import { readLines, serviceArgs, SERVICES } from "../lib/service_process.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const COLOURS = { order: "\x1b[36m", inventory: "\x1b[35m", notification: "\x1b[34m" };

/** Prints each line of `stream` behind the service's name, a JSON log record rendered readably. */
function pipeLog(name: keyof typeof COLOURS, stream: ReadableStream<Uint8Array>): Promise<void> {
  const prefix = `${COLOURS[name]}${name.padEnd(12)}\x1b[0m│ `;
  return readLines(stream, (line) => {
    let text = line;
    try {
      const { service: _, ...record } = JSON.parse(line);
      text = renderPretty(record);
    } catch {
      // Not a log record (a crash trace, say): show it as it is.
    }
    console.log(prefix + text);
  });
}

async function main(): Promise<number> {
  if (!(await ensureBroker(brokerAddress().amqpUrl, "dev"))) return 1;
  const envFile = join(ROOT, ".env");
  const useEnvFile = await Deno.stat(envFile).then(() => true, () => false);
  const children = SERVICES.map((name) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: serviceArgs(name, useEnvFile ? [`--env-file=${envFile}`] : []),
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
