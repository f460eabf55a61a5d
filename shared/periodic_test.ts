import assert from "node:assert/strict";
import { recordingLogger } from "./testing/recording_logger.ts";
import { startPeriodic } from "./periodic.ts";

/** Lets every callback already queued run, so that a test can assert that nothing more happened. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("startPeriodic() runs its task now and again after each pause until stopped", async () => {
  const { log } = recordingLogger();
  const third = Promise.withResolvers<void>();
  let rounds = 0;
  const task = startPeriodic(() => {
    if (++rounds === 3) third.resolve();
    return Promise.resolve();
  }, { intervalMs: 1, log, name: "count rounds" });
  await third.promise;
  await task.stop();
  const stoppedAt = rounds;
  await settle();
  assert.ok(stoppedAt >= 3);
  assert.equal(rounds, stoppedAt, "no round after stop()");
});

Deno.test("startPeriodic() logs a streak of failed rounds once, with its fields, and its end", async () => {
  const logged: Array<[string, string, Record<string, unknown> | undefined]> = [];
  const line = (level: string) => (msg: string, fields?: Record<string, unknown>) =>
    void logged.push([level, msg, fields]);
  const log = {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
  const recovered = Promise.withResolvers<void>();
  let rounds = 0;
  const task = startPeriodic(() => {
    rounds++;
    if (rounds <= 3) return Promise.reject(new Error("database is locked"));
    if (rounds === 4) recovered.resolve();
    return Promise.resolve();
  }, { intervalMs: 1, log, name: "delete expired rows", fields: { table: "inbox" } });
  await recovered.promise;
  await task.stop();
  assert.deepEqual(logged, [
    ["warn", "cannot delete expired rows, will retry", {
      table: "inbox",
      error: "database is locked",
    }],
    ["info", "recovered: delete expired rows", { table: "inbox", failures: 3 }],
  ]);
});

Deno.test("startPeriodic() stop() waits for the round in hand and runs none after it", async () => {
  const { log } = recordingLogger();
  const release = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  let rounds = 0;
  const task = startPeriodic(() => {
    rounds++;
    started.resolve();
    return release.promise;
  }, { intervalMs: 1, log, name: "hold a round" });
  await started.promise;
  let stopped = false;
  const stopping = task.stop().then(() => stopped = true);
  await settle();
  assert.equal(stopped, false, "the round in hand is not cut short");
  release.resolve();
  await stopping;
  await settle();
  assert.equal(rounds, 1);
});

Deno.test("startPeriodic() refuses an interval that is not positive", () => {
  const { log } = recordingLogger();
  assert.throws(
    () => startPeriodic(() => Promise.resolve(), { intervalMs: 0, log, name: "never run" }),
    /intervalMs must be positive: current value is 0/,
  );
});
