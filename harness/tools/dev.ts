/**
 * `deno task dev`: makes sure a broker answers at `AMQP_URL` (starting one if it can), then runs the
 * three services with one readable, prefixed log, and stops them cleanly on Ctrl-C.
 * @module
 */
import { join } from "node:path";
import { renderPretty } from "../../shared/log.ts";
import { SERVICE_RUN_FLAGS, SERVICES } from "../lib/stack.ts";
import { ensureBroker } from "../lib/broker_check.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const COLOURS = { order: "\x1b[36m", inventory: "\x1b[35m", notification: "\x1b[34m" };

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
  if (!(await ensureBroker(amqpUrl, "dev"))) return 1;
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
