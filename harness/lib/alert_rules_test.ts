import assert from "node:assert/strict";
import { parseAlertRules, withForDurations } from "./alert_rules.ts";

const RULES = `groups:
  - name: g
    rules:
      - alert: Quick
        expr: up == 0
        labels:
          severity: critical
        annotations:
          runbook_url: "docs/runbooks.md#quick"

      - alert: Patient
        expr: >-
          sum by (queue) (x)
          == 0
        for: 5m
        annotations:
          runbook_url: "docs/runbooks.md#patient"
`;

Deno.test("parseAlertRules() finds each alert with its for: duration and runbook link", () => {
  assert.deepEqual(parseAlertRules(RULES), [
    { name: "Quick", for: undefined, runbookUrl: "docs/runbooks.md#quick" },
    { name: "Patient", for: "5m", runbookUrl: "docs/runbooks.md#patient" },
  ]);
});

Deno.test("withForDurations() sets every for: duration and nothing else", () => {
  const short = withForDurations(RULES, "1s");
  assert.equal(short, RULES.replace("for: 5m", "for: 1s"));
  assert.deepEqual(parseAlertRules(short).map((rule) => rule.for), [undefined, "1s"]);
});
