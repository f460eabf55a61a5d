/**
 * The alert rules as an on-call operator relies on them: `promtool` finds the configuration and the
 * rules valid and passes their unit tests (observability/alerts_test.yml); every alert has a series
 * it must stay quiet on and one that fires it, and a runbook section its annotation links. The
 * promtool tests are skipped with one line where promtool is not installed.
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ALERTS_FILE, parseAlertRules } from "../lib/alert_rules.ts";
import { findProgram, PROMETHEUS_HINT } from "../lib/prometheus_server.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const OBSERVABILITY = join(ROOT, "observability");

const PROMTOOL = findProgram("promtool");
if (!PROMTOOL) {
  console.log(`alert rule tests: promtool is not installed (${PROMETHEUS_HINT}); skipped`);
}

/** Runs promtool with `args` and asserts that it succeeds; returns what it printed. */
async function promtool(...args: string[]): Promise<string> {
  const { success, stdout, stderr } = await new Deno.Command(PROMTOOL!, { args, cwd: ROOT })
    .output();
  const printed = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  assert.ok(success, `promtool ${args.join(" ")} failed:\n${printed}`);
  return printed;
}

/** The alerts each case of a promtool test file expects quiet, and those it expects to fire. */
function testedAlerts(text: string): { quiet: Set<string>; fires: Set<string> } {
  const quiet = new Set<string>();
  const fires = new Set<string>();
  for (const [, name, empty] of text.matchAll(/alertname: (\w+)\n\s+exp_alerts:( \[\])?/g)) {
    (empty ? quiet : fires).add(name);
  }
  return { quiet, fires };
}

/** The anchors GitHub gives the headings of a markdown page. */
function headingAnchors(markdown: string): Set<string> {
  return new Set(
    [...markdown.matchAll(/^#+ (.+)$/gm)].map(([, heading]) =>
      heading.toLowerCase().replace(/[^\w\- ]/g, "").replaceAll(" ", "-")
    ),
  );
}

Deno.test({
  name: "promtool finds prometheus.yml and the alert rules it loads valid",
  ignore: !PROMTOOL,
  fn: async () => {
    const printed = await promtool("check", "config", join(OBSERVABILITY, "prometheus.yml"));
    assert.match(printed, /alerts\.yml/, "prometheus.yml loads alerts.yml");
    await promtool("check", "rules", ALERTS_FILE);
  },
});

Deno.test({
  name: "promtool test rules passes every alert's unit tests",
  ignore: !PROMTOOL,
  fn: async () => {
    assert.match(
      await promtool("test", "rules", join(OBSERVABILITY, "alerts_test.yml")),
      /SUCCESS/,
    );
  },
});

Deno.test("every alert has a quiet case, a firing case and a runbook section", async () => {
  const rules = parseAlertRules(await Deno.readTextFile(ALERTS_FILE));
  const { quiet, fires } = testedAlerts(
    await Deno.readTextFile(join(OBSERVABILITY, "alerts_test.yml")),
  );
  const anchors = headingAnchors(await Deno.readTextFile(join(ROOT, "docs", "runbooks.md")));
  assert.ok(rules.length >= 10, `${rules.length} alerts found`);
  for (const { name, runbookUrl } of rules) {
    assert.ok(quiet.has(name), `${name} has a series it must stay quiet on`);
    assert.ok(fires.has(name), `${name} has a series that fires it`);
    const [page, anchor] = runbookUrl?.split("#") ?? [];
    assert.equal(page, "docs/runbooks.md", `${name}'s runbook_url names the runbooks`);
    assert.ok(anchors.has(anchor), `${name}'s runbook_url #${anchor} is a section of the runbooks`);
  }
  const names = new Set(rules.map((rule) => rule.name));
  for (const name of [...quiet, ...fires]) assert.ok(names.has(name), `${name} is an alert`);
});
