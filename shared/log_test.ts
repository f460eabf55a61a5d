import assert from "node:assert/strict";

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
