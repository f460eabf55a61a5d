import assert from "node:assert/strict";

/**
 * Starts a service through runService() in a process of its own, with a consumer, a task and a
 * route of its own, and a broker that does not answer (port 1): it must serve anyway, and stop
 * cleanly on SIGTERM, its task among the parts stopped.
 */
Deno.test("runService() serves a service's routes before the broker answers, and stops every part on SIGTERM", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "service_test_" });
  const service = new URL("./service.ts", import.meta.url).href;
  const events = new URL("./events.ts", import.meta.url).href;
  const program = `
    import { Hono } from "hono";
    import { consumer, runService } from "${service}";
    import { orderPlacedSchema } from "${events}";
    await runService({
      name: "inventory",
      migrations: [],
      consumers: () => [consumer({ queue: "order-placed", schema: orderPlacedSchema, handle: () => {} })],
      tasks: ({ log }) => [{ stop: async () => log.info("task stopped") }],
      routes: ({ config }) => new Hono().get("/hello", (c) => c.json({ port: config.ports.inventory })),
    });
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", new URL("../deno.json", import.meta.url).pathname, program],
    env: {
      AMQP_URL: "amqp://guest:guest@127.0.0.1:1/",
      INVENTORY_PORT: "0",
      DATA_DIR: dataDir,
      LOG_FORMAT: "json",
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const lines: Array<Record<string, unknown>> = [];
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const next = async (): Promise<boolean> => {
      const { value, done } = await reader.read();
      if (done) return false;
      buffered += value;
      const complete = buffered.split("\n");
      buffered = complete.pop()!;
      for (const line of complete) if (line.startsWith("{")) lines.push(JSON.parse(line));
      return true;
    };
    while (!lines.some((line) => line.msg === "listening") && await next());
    const port = lines.find((line) => line.msg === "listening")?.port;
    assert.ok(typeof port === "number" && port > 0, JSON.stringify(lines));

    const hello = await fetch(`http://127.0.0.1:${port}/hello`);
    assert.equal(hello.status, 200);
    assert.equal(typeof (await hello.json()).port, "number");
    const health = await fetch(`http://127.0.0.1:${port}/health`);
    assert.equal(health.status, 200);
    await health.body?.cancel();

    child.kill("SIGTERM");
    while (await next());
    const { code } = await child.status;
    assert.equal(code, 0);
    const said = lines.map((line) => line.msg);
    const at = (msg: string) => said.indexOf(msg);
    assert.ok(at("shutting down") >= 0 && at("task stopped") > at("shutting down"), said.join());
    assert.equal(said.at(-1), "stopped");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await child.stderr.cancel();
    await Deno.remove(dataDir, { recursive: true });
  }
});
