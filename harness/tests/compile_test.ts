/**
 * `deno task compile` builds standalone binaries. `deno compile` needs a Deno runtime binary that
 * it downloads (or takes from `DENORT_BIN`); where neither is possible, as on machines without
 * internet access, this test is skipped with a message saying why, rather than pretending.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitFor } from "../lib/async.ts";
import { INTEGRATION } from "../lib/stack.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

async function compile(entry: string, output: string): Promise<{ ok: boolean; stderr: string }> {
  const { success, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--output",
      output,
      entry,
    ],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  return { ok: success, stderr: new TextDecoder().decode(stderr) };
}

/** Whether `deno compile` can get its runtime here: probed once with the smallest program. */
async function compileAvailable(): Promise<string | undefined> {
  const dir = await Deno.makeTempDir();
  try {
    const probe = join(dir, "probe.ts");
    await Deno.writeTextFile(probe, "console.log('ok');\n");
    const { ok, stderr } = await compile(probe, join(dir, "probe"));
    return ok ? undefined : stderr.split("\n").find((line) => line.trim()) ?? "deno compile failed";
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const unavailable = await compileAvailable();
if (unavailable) {
  console.log(
    `compile_test: skipped, as deno compile cannot get its runtime binary here (${unavailable}); ` +
      "set DENORT_BIN to a denort binary to run it offline",
  );
}

/**
 * Starts `command` as an order service with no broker to talk to, and checks that it serves
 * `/health` and exits 0 on SIGTERM.
 */
async function assertServesWithoutBroker(command: string[], dataDir: string): Promise<void> {
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    // Nothing listens on port 1: the order API must start all the same (its outbox waits).
    env: {
      AMQP_URL: "amqp://guest:guest@127.0.0.1:1/",
      ORDER_PORT: "0",
      DATA_DIR: dataDir,
      LOG_FORMAT: "json",
    },
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  const port = await waitFor("the order service to listen", async () => {
    output += (await reader.read()).value ?? "";
    return /"port":(\d+)/.exec(output)?.[1];
  });
  assert.equal((await fetch(`http://127.0.0.1:${port}/health`)).status, 200);
  assert.equal((await fetch(`http://127.0.0.1:${port}/ready`)).status, 503);
  child.kill("SIGTERM");
  while (!(await reader.read()).done) { /* drain until the process closes its stdout */ }
  assert.equal((await child.status).code, 0);
}

Deno.test(
  "order/main.ts serves /health without a broker and exits 0 on SIGTERM",
  INTEGRATION,
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await assertServesWithoutBroker(
        [Deno.execPath(), "run", "-A", join(ROOT, "order/main.ts")],
        dir,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test({
  name: "deno compile builds an order binary that serves /health and exits 0 on SIGTERM",
  ignore: unavailable !== undefined,
  ...INTEGRATION,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const binary = join(dir, "order");
      const { ok, stderr } = await compile("order/main.ts", binary);
      assert.ok(ok, stderr);
      await assertServesWithoutBroker([binary], dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
