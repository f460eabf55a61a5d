/**
 * Unit tests of how figures are written.
 */
import assert from "node:assert/strict";
import { round, tally } from "./format.ts";

Deno.test("tally() counts equal values in first-seen order", () => {
  assert.equal(tally(["CONFIRMED", "PENDING", "CONFIRMED"]), "2×CONFIRMED, 1×PENDING");
  assert.equal(tally([1, 1, undefined]), "2×1, 1×undefined");
  assert.equal(tally([]), "nothing");
});

Deno.test("round() keeps the digits asked for", () => {
  assert.equal(round(1.23456), 1.23);
  assert.equal(round(1.25, 1), 1.3);
  assert.equal(round(1234.5, 0), 1235);
});
