/**
 * Unit tests of the depth chart: its shape in the terminal and a well-formed, escaped SVG.
 */
import assert from "node:assert/strict";
import { closeChart, escapeXml, openChart, renderSvgChart, renderTerminalChart } from "./chart.ts";

const ramp = [
  { t: 0, value: 0 },
  { t: 1, value: 5 },
  { t: 2, value: 10 },
  { t: 3, value: 10 },
  { t: 3.2, value: 0 },
  { t: 4, value: 0 },
];
const marks = [{ t: 0, label: "stop" }, { t: 3, label: "start" }];

/** The plot rows of a chart rendered without title or y label: the lines before the axis. */
function plotRows(chart: string): string[] {
  const lines = chart.split("\n");
  return lines.slice(0, lines.findIndex((line) => line.includes("└")));
}

Deno.test("renderTerminalChart() draws height rows of width cells above the axis", () => {
  const chart = renderTerminalChart(ramp, { width: 40, height: 8, marks });
  const rows = plotRows(chart);
  assert.equal(rows.length, 8);
  for (const row of rows) assert.equal([...row.split("┤")[1]].length, 40);
  assert.match(rows[0], /^10 ┤/);
  assert.match(rows[4], /^ 5 ┤/);
});

Deno.test("renderTerminalChart() fills a full column at the peak and none where the value is 0", () => {
  const rows = plotRows(renderTerminalChart(ramp, { width: 40, height: 8 }));
  const cells = rows.map((row) => [...row.split("┤")[1]]);
  // t = 2.5 s is column 25 of 40 over 4 s: the value 10 is the top of the scale.
  assert.ok(cells.every((row) => row[25] === "█"));
  // t = 3.6 s, after the drop to 0.
  assert.ok(cells.every((row) => row[36] === " "));
});

Deno.test("renderTerminalChart() marks each moment on the axis and labels it below", () => {
  const chart = renderTerminalChart(ramp, { width: 40, height: 4, marks });
  const lines = chart.split("\n");
  const axis = lines.find((line) => line.includes("└"))!;
  assert.equal([...axis].filter((c) => c === "┴").length, 2);
  assert.ok(lines.some((line) => line.includes("▲ stop 0 s") && line.includes("▲ start 3 s")));
});

Deno.test("renderTerminalChart() draws an all-zero series on a scale of 1 without dividing by 0", () => {
  const chart = renderTerminalChart([{ t: 0, value: 0 }, { t: 2, value: 0 }], { height: 4 });
  assert.doesNotMatch(chart, /NaN|Infinity/);
  assert.ok(plotRows(chart).every((row) => !/[▁-█]/.test(row)));
});

Deno.test("renderTerminalChart() throws on a plot too small to read", () => {
  assert.throws(() => renderTerminalChart(ramp, { width: 4 }), RangeError);
});

Deno.test("renderSvgChart() writes a well-formed SVG document with the line and the marks", () => {
  const svg = renderSvgChart(ramp, { marks, title: "depth <order-placed> & co" });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.ok(svg.includes("depth &#60;order-placed&#62; &#38; co"));
  assert.equal(svg.match(/stroke-dasharray/g)?.length, 2);
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  assertBalanced(svg);
});

Deno.test("renderSvgChart() draws an empty series as axes only", () => {
  const svg = renderSvgChart([]);
  assert.doesNotMatch(svg, /NaN|Infinity/);
  assertBalanced(svg);
});

Deno.test("openChart() and closeChart() make a whole SVG document, the title escaped and optional", () => {
  const frame = { pad: { left: 50, top: 40 }, plotW: 200, plotH: 100, height: 180, xLabel: "s" };
  const titled = [...openChart({ width: 300, height: 180, title: "a < b" }), ...closeChart(frame)];
  assert.match(titled[0], /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" width="300" height="180" /);
  assert.ok(titled.includes(`<rect width="300" height="180" fill="white"/>`));
  assert.equal(titled.filter((line) => line.includes("a &#60; b")).length, 1);
  assert.equal(titled.at(-1), "</svg>");
  const untitled = openChart({ width: 300, height: 180, title: "" });
  assert.ok(!untitled.some((line) => line.startsWith("<text")), untitled.join("\n"));
});

Deno.test("escapeXml() escapes the five special characters", () => {
  assert.equal(
    escapeXml(`<a href="x">'&'</a>`),
    "&#60;a href=&#34;x&#34;&#62;&#39;&#38;&#39;&#60;/a&#62;",
  );
});

/** Every opened element is closed, in order: enough to tell a broken SVG from a well-formed one. */
function assertBalanced(xml: string): void {
  const open: string[] = [];
  for (const [, closing, name, selfClosing] of xml.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (selfClosing) continue;
    if (closing) assert.equal(open.pop(), name);
    else open.push(name);
  }
  assert.deepEqual(open, []);
}
