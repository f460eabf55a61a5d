/**
 * How the harness writes figures in its steps and reports: rounded numbers and tallies of values.
 * @module
 */

/** Rounds `value` to `digits` decimals. */
export function round(value: number, digits = 2): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Counts equal values: `tally(["CONFIRMED", "CONFIRMED", "PENDING"])` is `"2×CONFIRMED, 1×PENDING"`. */
export function tally(values: ReadonlyArray<string | number | undefined>): string {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(String(value), (counts.get(String(value)) ?? 0) + 1);
  return [...counts].map(([value, count]) => `${count}×${value}`).join(", ") || "nothing";
}
