import assert from "node:assert/strict";
import { LineChart } from "./chart.tsx";

function draw(points: Array<{ t: number; value: number }>): string {
  return String(LineChart({
    series: [{ name: "order-placed ready", color: "#000", points }],
    from: 0,
    to: 60_000,
    label: "queue depths",
  }));
}

Deno.test("LineChart() marks each line with its name, last and peak values", () => {
  const svg = draw([{ t: 0, value: 0 }, { t: 20_000, value: 12 }, { t: 40_000, value: 3 }]);
  assert.match(svg, /data-series="order-placed ready" data-last="3" data-peak="12"/);
  assert.match(svg, /aria-label="queue depths"/);
});

Deno.test("LineChart() steps: a value holds until the next reading", () => {
  const svg = draw([{ t: 0, value: 0 }, { t: 30_000, value: 10 }, { t: 60_000, value: 10 }]);
  // From the left edge at 0, across to the middle, up to 10 (the top), on to the right edge.
  const path = /<path d="([^"]+)"/.exec(svg)?.[1];
  assert.equal(path, "M44,196H376V10H708V10");
});

Deno.test("LineChart() leaves out readings older than its left edge", () => {
  const svg = String(LineChart({
    series: [{
      name: "q",
      color: "#000",
      points: [{ t: -5_000, value: 99 }, { t: 10_000, value: 1 }],
    }],
    from: 0,
    to: 60_000,
    label: "l",
  }));
  assert.match(svg, /<path d="M154\.7,\S+" /, "the line starts at the reading of 10 s");
  assert.match(svg, /data-last="1" data-peak="1"/);
});

Deno.test("LineChart() labels the time axis back from now", () => {
  const svg = draw([]);
  assert.match(svg, />now</);
  assert.match(svg, />−1 min</);
});
