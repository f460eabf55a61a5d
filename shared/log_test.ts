import assert from "node:assert/strict";
import { stripVTControlCharacters } from "node:util";
import { renderPretty } from "./log.ts";

/** Runs `code` (a module body that may use `log`) in its own process and returns its stdout lines. */
async function logLinesOf(code: string): Promise<Array<Record<string, unknown>>> {
  const program = `import { createLogger } from ${JSON.stringify(import.meta.resolve("./log.ts"))};
    const log = createLogger("test", { format: "json" });
    ${code}`;
  const { stdout, success } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", program],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.ok(success || code.includes("throw"), "the program ran");
  return new TextDecoder().decode(stdout).trim().split("\n").map((line) => JSON.parse(line));
}

Deno.test("createLogger() writes every line in order, also when Deno.exit() follows at once", async () => {
  const lines = await logLinesOf(`
    log.info("one", { order_id: "o1" });
    log.warn("two");
    log.info("three");
    Deno.exit(0);`);
  assert.deepEqual(lines.map((line) => [line.msg, line.level]), [
    ["one", "info"],
    ["two", "warn"],
    ["three", "info"],
  ]);
  assert.equal(lines[0].order_id, "o1");
  assert.equal(lines[0].service, "test");
});

Deno.test("createLogger() writes the lines before an uncaught error ends the process", async () => {
  const lines = await logLinesOf(`
    log.info("last words");
    throw new Error("boom");`);
  assert.deepEqual(lines.map((line) => line.msg), ["last words"]);
});

Deno.test("createLogger() drops lines below its level", async () => {
  const lines = await logLinesOf(`
    const quiet = (await import(${
    JSON.stringify(import.meta.resolve("./log.ts"))
  })).createLogger("test", { format: "json", level: "warn" });
    quiet.info("dropped");
    quiet.error("kept", { error: new Error("outer", { cause: new Error("inner") }) });`);
  assert.deepEqual(lines.map((line) => [line.msg, line.error]), [["kept", "outer: inner"]]);
});

Deno.test("createLogger() hides the password of any URL a line holds", async () => {
  const lines = await logLinesOf(`
    log.warn("cannot reach broker", { error: new Error("connect amqp://order:s3cret@rabbit:5672/") });`);
  assert.equal(lines[0].error, "connect amqp://order:***@rabbit:5672/");
});

Deno.test("createLogger() hides a password holding a quote and keeps the line JSON, whatever else it holds", async () => {
  const lines = await logLinesOf(`
    log.warn("cannot reach broker", {
      error: new Error('connect amqp://order:p"a s/s@rabbit:5672/ refused'),
      user_id: "alice@uni.example",
    });`);
  assert.equal(lines[0].error, "connect amqp://order:***@rabbit:5672/ refused");
  assert.equal(lines[0].user_id, "alice@uni.example");
});

Deno.test("renderPretty() hides passwords as the JSON lines do", () => {
  const line = stripVTControlCharacters(renderPretty({
    time: "2025-01-01T09:00:00.000Z",
    level: "info",
    msg: "connected to broker",
    url: "amqp://console:s3cret@127.0.0.1:5672/campus",
    webhook: { url: "https://hook.example/in?token=t0ken" },
  }));
  assert.ok(!line.includes("s3cret") && !line.includes("t0ken"), line);
  assert.match(line, /url=amqp:\/\/console:\*\*\*@127\.0\.0\.1:5672\/campus/);
});

Deno.test("renderPretty() escapes control characters, so a value cannot forge a line or drive the terminal", () => {
  const sku = "burger\n09:00:00.000 error stock corrupted\x1b[2J\x1b]0;owned\x07\r\u2028\u202e";
  const line = renderPretty({
    time: "2025-01-01T09:00:00.000Z",
    level: "info",
    msg: `reserved stock\nfor ${sku}`,
    sku,
  });
  for (const char of ["\n", "\r", "\x07", "\u2028", "\u202e"]) {
    assert.ok(!line.includes(char), JSON.stringify(line));
  }
  // The only escape sequences left are the printer's own colours.
  const escapes = line.split("\x1b").slice(1);
  assert.ok(escapes.every((rest) => /^\[(90|0|32)m/.test(rest)), JSON.stringify(line));
  assert.match(
    line,
    /sku=burger\\n09:00:00\.000 error stock corrupted\\u001b\[2J\\u001b\]0;owned\\u0007\\r\\u2028\\u202e/,
  );
});
