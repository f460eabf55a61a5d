/**
 * `deno task test`'s first step, on a machine whose management API does not serve.
 */
import assert from "node:assert/strict";

Deno.test("deno task test's first step says in one line how to turn the management API on", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./test_preflight.ts", import.meta.url).pathname],
    // Not this machine's address: the step must not try to enable the plugin here.
    env: { RABBITMQ_MANAGEMENT_URL: "http://guest:guest@192.0.2.1:15672" },
  }).output();
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assert.equal(code, 1);
  // Only the line about a missing browser may go to stdout: it is advice, not a failure.
  assert.match(new TextDecoder().decode(stdout), /^(test: chromium is not installed.*\n)?$/);
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0],
    /^test: the RabbitMQ management API at 192\.0\.2\.1:15672 does not serve \(nothing answers\).*rabbitmq-plugins enable rabbitmq_management/,
  );
});
