import assert from "node:assert/strict";

/** Runs a program that calls onShutdown() with `steps`, sends it SIGTERM once it is ready. */
async function stopped(steps: string, timeoutMs: number): Promise<{ code: number; out: string }> {
  const module = new URL("./shutdown.ts", import.meta.url).href;
  const logModule = new URL("./log.ts", import.meta.url).href;
  const program = `
    import { onShutdown } from "${module}";
    import { createLogger } from "${logModule}";
    const log = createLogger("test", { format: "json" });
    onShutdown(log, [${steps}], ${timeoutMs});
    console.log("ready");
    setInterval(() => {}, 1000);
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", program],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  child.kill("SIGTERM");
  for (let next = await reader.read(); !next.done; next = await reader.read()) out += next.value;
  const { code } = await child.output().catch(() => child.status);
  return { code, out };
}

Deno.test("onShutdown() runs its steps in order on SIGTERM, past a failing one, then exits 0", async () => {
  const { code, out } = await stopped(
    `async () => log.info("step 1"),
     async () => { throw new Error("step 2 broke"); },
     async () => log.info("step 3")`,
    10_000,
  );
  assert.equal(code, 0);
  const said = out.split("\n").filter((line) => line.startsWith("{")).map((line) =>
    JSON.parse(line).msg
  );
  assert.deepEqual(said, ["shutting down", "step 1", "shutdown step failed", "step 3", "stopped"]);
});

Deno.test("onShutdown() exits 1 when its steps take longer than the timeout", async () => {
  const { code, out } = await stopped(`() => new Promise(() => {})`, 200);
  assert.equal(code, 1);
  assert.match(out, /shutdown took too long, exiting/);
});
