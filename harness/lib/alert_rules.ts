/**
 * The project's alert rules (`observability/alerts.yml`) as the tests read them: each alert's name,
 * `for:` duration and runbook link, and the rules with their `for:` durations cut short, so that a test
 * against a real Prometheus sees an alert fire in seconds. The file is read as text, as it is
 * written (one `- alert:` per rule, `for` and `runbook_url` on lines of their own), since
 * the project takes no YAML parser for its tests alone; promtool checks it as YAML.
 * @module
 */
import { join } from "node:path";

const ROOT = new URL("../..", import.meta.url).pathname;

/** Where the alert rules are. */
export const ALERTS_FILE = join(ROOT, "observability", "alerts.yml");

/** One alert rule of the file. */
export interface AlertRule {
  name: string;
  /** Its `for:` duration, or undefined when it fires at once. */
  for?: string;
  /** Its `runbook_url` annotation: `docs/runbooks.md#<anchor>`. */
  runbookUrl?: string;
}

/** The alert rules of `text` (the file's text), in the order they are written. */
export function parseAlertRules(text: string): AlertRule[] {
  return text.split(/^\s*- alert: /m).slice(1).map((part) => {
    const [name, ...lines] = part.split("\n");
    const field = (key: string) =>
      lines.find((line) => line.trimStart().startsWith(`${key}:`))?.split(`${key}:`)[1].trim();
    return {
      name: name.trim(),
      for: field("for"),
      runbookUrl: field("runbook_url")?.replace(/^"|"$/g, ""),
    };
  });
}

/** `text` with every alert's `for:` duration set to `duration` (e.g. `1s`). */
export function withForDurations(text: string, duration: string): string {
  return text.replace(/^(\s+for:\s*)\S+\s*$/gm, `$1${duration}`);
}
