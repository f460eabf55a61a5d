import assert from "node:assert/strict";
import { BrokerTimeoutError, openedWithDeadline, withDeadline } from "./broker_deadline.ts";

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

Deno.test("openedWithDeadline() closes what opens after its deadline, and only that", async () => {
  let closed = 0;
  const opened = { close: () => Promise.resolve(void closed++) };
  assert.equal(await openedWithDeadline(Promise.resolve(opened), 1000, "open a channel"), opened);
  assert.equal(closed, 0);
  let open!: (value: typeof opened) => void;
  const late = new Promise<typeof opened>((resolve) => open = resolve);
  await assert.rejects(openedWithDeadline(late, 20, "open a channel"), BrokerTimeoutError);
  open(opened);
  await late;
  await Promise.resolve();
  assert.equal(closed, 1);
});
