import assert from "node:assert/strict";
import { storeKinds } from "./testing/stores.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { PAUSED_MSG, RESUMED_MSG, watchOutages } from "./outage.ts";
import { type DrainLoop, type DrainLoopOptions, startDrainLoop } from "./drain_loop.ts";

/** Longer than any test runs: a round that runs within a test ran because of a wake. */
const NO_POLL = 60_000;
const MESSAGES = { failing: "cannot drain, will retry", recovered: "draining again" };
const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;

/** A round the test ends by hand: resolves with whether more waits, or throws. */
interface Round {
  finish(more: boolean): void;
  fail(error: Error): void;
}

/** Rounds that wait for the test to end them, and a way to wait for the nth to start. */
function scriptedRounds() {
  const rounds: Round[] = [];
  const waiting = new Map<number, () => void>();
  return {
    rounds,
    run(): Promise<boolean> {
      const { promise, resolve, reject } = Promise.withResolvers<boolean>();
      rounds.push({ finish: resolve, fail: reject });
      waiting.get(rounds.length)?.();
      return promise;
    },
    /** Resolves with the `nth` round (from 1) once it has started. */
    started(nth: number): Promise<Round> {
      if (rounds.length >= nth) return Promise.resolve(rounds[nth - 1]);
      return new Promise((resolve) => waiting.set(nth, () => resolve(rounds[nth - 1])));
    },
  };
}

/**
 * Lets every callback already queued run (a round that a wake or a finished round started would
 * have started by then), so that a test can assert that nothing more happened.
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Runs `fn` with a drain loop of scripted rounds over a SQLite store's outages; stops it after. */
async function withLoop(
  options: Partial<DrainLoopOptions> & { initialProbeDelayMs?: number },
  fn: (fixture: {
    loop: DrainLoop;
    script: ReturnType<typeof scriptedRounds>;
    lines: string[];
  }) => Promise<void>,
): Promise<void> {
  const { initialProbeDelayMs = 10, ...loopOptions } = options;
  await sqlite.with("drain_loop", [], async (store) => {
    const { log, lines } = recordingLogger();
    const outages = watchOutages(store, {
      log,
      initialDelayMs: initialProbeDelayMs,
      maxDelayMs: initialProbeDelayMs,
    });
    const script = scriptedRounds();
    const loop = startDrainLoop(() => script.run(), {
      log,
      outages,
      messages: MESSAGES,
      pollIntervalMs: NO_POLL,
      ...loopOptions,
    });
    try {
      await fn({ loop, script, lines });
    } finally {
      for (const round of script.rounds) round.finish(false);
      await loop.stop();
      await outages.stop();
    }
  });
}

Deno.test("startDrainLoop() runs a round at once, then sleeps until woken", async () => {
  await withLoop({}, async ({ loop, script }) => {
    (await script.started(1)).finish(false);
    await settle();
    assert.equal(script.rounds.length, 1, "asleep after a round that drained everything");
    loop.wake();
    (await script.started(2)).finish(false);
    await settle();
    assert.equal(script.rounds.length, 2);
  });
});

Deno.test("startDrainLoop() runs the next round at once after one that left more to do", async () => {
  await withLoop({}, async ({ script }) => {
    (await script.started(1)).finish(true);
    (await script.started(2)).finish(false);
    await settle();
    assert.equal(script.rounds.length, 2);
  });
});

Deno.test("startDrainLoop() keeps a wake that came during a round for the next one", async () => {
  await withLoop({}, async ({ loop, script }) => {
    const first = await script.started(1);
    loop.wake();
    first.finish(false);
    (await script.started(2)).finish(false);
    await settle();
    assert.equal(script.rounds.length, 2, "one wake, one more round");
  });
});

Deno.test("startDrainLoop() runs a round after the poll interval when nothing wakes it", async () => {
  await withLoop({ pollIntervalMs: 5 }, async ({ script }) => {
    (await script.started(1)).finish(false);
    (await script.started(2)).finish(false);
    assert.equal(script.rounds.length, 2);
  });
});

Deno.test("startDrainLoop() logs a streak of failed rounds once, retries at a wake or the poll rather than at once, and logs its end", async () => {
  await withLoop({}, async ({ loop, script, lines }) => {
    const first = await script.started(1);
    loop.wake();
    first.fail(new Error("broker refused"));
    await settle();
    assert.equal(script.rounds.length, 1, "a failed round is not run again at once for a wake");
    loop.wake();
    (await script.started(2)).fail(new Error("broker refused"));
    await settle();
    assert.deepEqual(lines, [`warn ${MESSAGES.failing}`]);
    loop.wake();
    (await script.started(3)).finish(false);
    await settle();
    assert.deepEqual(lines, [`warn ${MESSAGES.failing}`, `info ${MESSAGES.recovered}`]);
  });
});

Deno.test("startDrainLoop() skips rounds while canRun() says no, and a skipped round ends no streak", async () => {
  let canRun = false;
  await withLoop({ canRun: () => canRun }, async ({ loop, script, lines }) => {
    await settle();
    loop.wake();
    await settle();
    assert.equal(script.rounds.length, 0);
    canRun = true;
    loop.wake();
    (await script.started(1)).fail(new Error("broker refused"));
    await settle();
    canRun = false;
    loop.wake();
    await settle();
    assert.equal(script.rounds.length, 1);
    assert.deepEqual(lines, [`warn ${MESSAGES.failing}`], "no recovery logged for a skipped round");
  });
});

Deno.test("startDrainLoop() pauses a round that hit an outage and runs it again once the database answers", async () => {
  await withLoop({}, async ({ script, lines }) => {
    (await script.started(1)).fail(new Error("database or disk is full"));
    (await script.started(2)).finish(false);
    await settle();
    assert.deepEqual(lines, [`warn ${PAUSED_MSG}`, `info ${RESUMED_MSG}`]);
  });
});

Deno.test("startDrainLoop() stop() ends a loop paused by an outage without running its round again", async () => {
  await withLoop({ initialProbeDelayMs: NO_POLL }, async ({ loop, script, lines }) => {
    (await script.started(1)).fail(new Error("database or disk is full"));
    await loop.stop();
    assert.equal(script.rounds.length, 1);
    assert.deepEqual(lines, [`warn ${PAUSED_MSG}`]);
  });
});

for (const lastRoundOnStop of [false, true]) {
  Deno.test(`startDrainLoop() stop() ends a sleeping loop ${lastRoundOnStop ? "after one last round" : "at once"} (lastRoundOnStop: ${lastRoundOnStop})`, async () => {
    await withLoop({ lastRoundOnStop }, async ({ loop, script }) => {
      (await script.started(1)).finish(false);
      await settle();
      const stopped = loop.stop();
      if (lastRoundOnStop) (await script.started(2)).finish(true);
      await stopped;
      assert.equal(script.rounds.length, lastRoundOnStop ? 2 : 1);
    });
  });

  Deno.test(`startDrainLoop() stop() waits for the round in hand and runs none after it (lastRoundOnStop: ${lastRoundOnStop})`, async () => {
    await withLoop({ lastRoundOnStop }, async ({ loop, script }) => {
      const first = await script.started(1);
      let stopped = false;
      const stopping = loop.stop().then(() => stopped = true);
      await settle();
      assert.equal(stopped, false, "the round in hand is not cut short");
      first.finish(true);
      await stopping;
      assert.equal(script.rounds.length, 1);
    });
  });
}

Deno.test("startDrainLoop() refuses a poll interval that is not positive", async () => {
  await sqlite.with("drain_loop", [], (store) => {
    const { log } = recordingLogger();
    const outages = watchOutages(store, { log });
    assert.throws(
      () =>
        startDrainLoop(() => Promise.resolve(false), {
          log,
          outages,
          messages: MESSAGES,
          pollIntervalMs: 0,
        }),
      /pollIntervalMs must be positive: current value is 0/,
    );
    return outages.stop();
  });
});
