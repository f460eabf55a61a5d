import assert from "node:assert/strict";
import { renderSvgLineChart } from "./line_chart.ts";

Deno.test("renderSvgLineChart() draws each series with its legend, on logarithmic axes", () => {
  const svg = renderSvgLineChart(
    [
      { label: "p50", points: [{ x: 100, y: 3 }, { x: 1000, y: 9 }] },
      { label: "p99 & more", points: [{ x: 100, y: 14 }, { x: 1000, y: 0 }], dashed: true },
    ],
    { title: "latency", logX: true, logY: true, marks: [{ x: 500, label: "knee" }] },
  );
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.equal(
    svg.match(/<path d="M[^"]*" fill="none" stroke="#\w+" stroke-width="2"/g)?.length,
    2,
  );
  // The point at 0 cannot sit on a logarithmic axis: left out, not drawn at minus infinity.
  assert.equal(svg.match(/<circle /g)?.length, 3);
  assert.match(svg, />p99 &#38; more</);
  assert.match(svg, /stroke-dasharray="6 4"/);
  assert.match(svg, />knee</);
  for (const tick of [">100<", ">200<", ">500<", ">1000<"]) assert.ok(svg.includes(tick), tick);
  assert.ok(!svg.includes("NaN") && !svg.includes("Infinity"), svg);
});

Deno.test("renderSvgLineChart() draws linear axes from 0, and refuses a chart with nothing to draw", () => {
  const svg = renderSvgLineChart([{ label: "a", points: [{ x: 1, y: 7 }, { x: 4, y: 2 }] }]);
  assert.match(svg, />0</);
  assert.ok(!svg.includes("NaN"), svg);
  assert.throws(() => renderSvgLineChart([{ label: "a", points: [] }]), RangeError);
});
