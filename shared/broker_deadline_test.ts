import assert from "node:assert/strict";
import { BrokerTimeoutError, withDeadline } from "./broker_deadline.ts";

Deno.test("withDeadline() gives the answer that comes in time, and its failure", async () => {
  assert.equal(await withDeadline(Promise.resolve("ok"), 1000, "answer"), "ok");
  await assert.rejects(withDeadline(Promise.reject(new Error("refused")), 1000, "answer"), {
    message: "refused",
  });
});

Deno.test("withDeadline() rejects naming the call once no answer came in time", async () => {
  const never = new Promise<never>(() => {});
  await assert.rejects(withDeadline(never, 20, "confirm a publish"), (error: unknown) => {
    assert.ok(error instanceof BrokerTimeoutError);
    assert.equal(error.message, "Broker did not answer within 20 ms to confirm a publish");
    return true;
  });
});
