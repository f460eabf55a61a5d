/**
 * The idle memory of the services against a bare Deno process with the same dependencies loaded:
 * what our code, its connections and its buffers cost when nothing happens.
 * @module
 */
import { join } from "node:path";
import { sleep } from "../lib/async.ts";
import { SERVICE_RUN_FLAGS, SERVICES } from "../lib/service_process.ts";
import { rssMb } from "./_stats.ts";
import { type BenchConfig, type PeakRss, withBenchStack } from "./_stack.ts";
import type { MeasureOptions } from "./_measure.ts";

/** What {@linkcode measureIdle} found, in MB of resident memory (`VmRSS`). */
export interface IdleResult {
  /** Each service, started and ready, after `settleSeconds` with no work. */
  servicesMb: PeakRss;
  /** The bare process of `_bare_deno.ts`, after the same wait. */
  bareMb: number;
  settleSeconds: number;
}

/**
 * How long a process sits idle before its memory is read, by default. V8 gives back the heap that
 * start-up grew only once its memory reducer sees no allocation for a while, so a service read soon
 * after its start holds memory that it gives back later (docs/performance.md).
 */
export const IDLE_SETTLE_SECONDS = 45;

/**
 * Reads the idle memory of the three services of `config` and of a bare Deno process, each after
 * `settleSeconds` (default {@linkcode IDLE_SETTLE_SECONDS}) with nothing to do. The bare process
 * sits out the same wait beside the services.
 */
export async function measureIdle(
  config: BenchConfig,
  options: MeasureOptions & { settleSeconds?: number } = {},
): Promise<IdleResult> {
  const {
    log = () => {},
    memory = { rssMb: {}, privateMb: {} },
    settleSeconds = IDLE_SETTLE_SECONDS,
  } = options;
  log(
    `idle memory: the services and a bare Deno process with their dependencies, after ${settleSeconds} s`,
  );
  const settleMs = settleSeconds * 1000;
  const [servicesMb, bareMb] = await Promise.all([
    withBenchStack(config, { services: [...SERVICES], memory }, async ({ stack }) => {
      await sleep(settleMs);
      const read: PeakRss = {};
      for (const name of SERVICES) read[name] = await rssMb(stack.services[name]!.pid);
      return read;
    }),
    bareDenoRssMb(config.store, settleMs),
  ]);
  return { servicesMb, bareMb, settleSeconds };
}

/** The resident memory of `_bare_deno.ts` run with the services' flags, once it sat idle. */
async function bareDenoRssMb(store: BenchConfig["store"], settleMs: number): Promise<number> {
  const script = join(import.meta.dirname!, "_bare_deno.ts");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...SERVICE_RUN_FLAGS, script, store],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    if (!new TextDecoder().decode(value).startsWith("loaded")) {
      throw new Error("Cannot measure a bare Deno process as it did not load its dependencies");
    }
    reader.releaseLock();
    await sleep(settleMs);
    const mb = await rssMb(child.pid);
    if (mb === undefined) throw new Error("Cannot read the memory of the bare Deno process");
    return mb;
  } finally {
    await child.stdin.close();
    await child.stdout.cancel().catch(() => {});
    await child.status;
  }
}
