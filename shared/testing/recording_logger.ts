/**
 * A logger for tests that keeps every line it is given, so that a test can assert what was logged.
 * @module
 */
import type { Logger } from "../log.ts";

/** A logger that records each line as `"<level> <msg>"` in `lines`, and prints nothing. */
export function recordingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const record = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return {
    lines,
    log: {
      debug: record("debug"),
      info: record("info"),
      warn: record("warn"),
      error: record("error"),
    },
  };
}
