/**
 * Ctrl-C and SIGTERM in a scenario or a tool: what it made that would outlive it (a stack, a
 * database, broker nodes) is cleaned up, newest first, before the process exits 130.
 * @module
 */
import { describeError } from "../../shared/log.ts";

/** Set once a signal arrived: the run's own failure that follows is not worth a FAIL line. */
let interrupting = false;

/** What an interrupted run still cleans up, newest first; see {@linkcode cleanUpOnInterrupt}. */
const cleanups: Array<() => Promise<void>> = [];

const SIGNALS: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];

/** True once SIGINT or SIGTERM arrived and the cleanups are running. */
export function isInterrupted(): boolean {
  return interrupting;
}

/** Runs every registered cleanup, newest first, as `finally` blocks would unwind, then exits 130. */
async function onInterrupt(): Promise<void> {
  if (interrupting) return;
  interrupting = true;
  for (const cleanup of [...cleanups].reverse()) {
    await cleanup().catch((error) => console.error(`Cannot clean up: ${describeError(error)}`));
  }
  Deno.exit(130);
}

/**
 * Runs `cleanup` when the process gets SIGINT (Ctrl-C) or SIGTERM, before it exits 130. Cleanups
 * run newest first, so a stack made inside a cluster is closed before the cluster. The signals are
 * listened to only while a cleanup is registered.
 * @returns a function that unregisters it, for when the run has cleaned up itself
 */
export function cleanUpOnInterrupt(cleanup: () => Promise<void>): () => void {
  if (cleanups.length === 0) {
    for (const signal of SIGNALS) Deno.addSignalListener(signal, onInterrupt);
  }
  cleanups.push(cleanup);
  return function forget() {
    const index = cleanups.indexOf(cleanup);
    if (index < 0) return;
    cleanups.splice(index, 1);
    if (cleanups.length === 0) {
      for (const signal of SIGNALS) Deno.removeSignalListener(signal, onInterrupt);
    }
  };
}
