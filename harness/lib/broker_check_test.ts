/**
 * Unit tests of the broker check, against the broker: a list of nodes, and what keeps the
 * management API from serving.
 */
import assert from "node:assert/strict";
import { brokerAnswers, managementProblem } from "./broker_check.ts";
import { brokerAddress } from "./broker_address.ts";

const MANAGEMENT_URL = brokerAddress().managementUrl;

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
