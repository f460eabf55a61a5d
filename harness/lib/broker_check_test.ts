import assert from "node:assert/strict";
import { brokerAnswers, managementProblem } from "./broker_check.ts";

const MANAGEMENT_URL = Deno.env.get("RABBITMQ_MANAGEMENT_URL") ||
  "http://guest:guest@127.0.0.1:15672";

Deno.test("brokerAnswers() is true when one node of a list answers, against the broker", async () => {
  assert.equal(await brokerAnswers("amqp://127.0.0.1:1/, amqp://127.0.0.1:5672/"), true);
  assert.equal(await brokerAnswers("amqp://127.0.0.1:1/,amqp://127.0.0.1:2/"), false);
});

Deno.test("managementProblem() tells a serving API from a closed port and a refused user, against the broker", async () => {
  assert.equal(await managementProblem(MANAGEMENT_URL), undefined);
  assert.equal(await managementProblem("http://guest:guest@127.0.0.1:1"), "nothing answers");
  const wrongUser = new URL(MANAGEMENT_URL);
  wrongUser.username = "nobody";
  assert.equal(await managementProblem(wrongUser.toString()), 'it refuses the user "nobody" (401)');
});

Deno.test("deno task test's first step says in one line how to turn the management API on", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("../tools/test_preflight.ts", import.meta.url).pathname],
    // Not this machine's address: the step must not try to enable the plugin here.
    env: { RABBITMQ_MANAGEMENT_URL: "http://guest:guest@192.0.2.1:15672" },
  }).output();
  const lines = new TextDecoder().decode(stderr).trim().split("\n");
  assert.equal(code, 1);
  assert.equal(new TextDecoder().decode(stdout), "");
  assert.equal(lines.length, 1, lines.join("\n"));
  assert.match(
    lines[0],
    /^test: the RabbitMQ management API at 192\.0\.2\.1:15672 does not serve \(nothing answers\).*rabbitmq-plugins enable rabbitmq_management/,
  );
});
