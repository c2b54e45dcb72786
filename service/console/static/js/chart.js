// The loss chart: forget and retain loss per training step, drawn as an inline SVG from a
// job's `metrics` events, with the same numbers as a table for screen readers.

import { h, svg, table } from "./dom.js";

const WIDTH = 640, HEIGHT = 260;
const MARGIN = { left: 56, right: 16, top: 34, bottom: 40 };
const SERIES = [
  { key: "forget_loss", label: "forget loss", className: "series-forget" },
  { key: "retain_loss", label: "retain loss", className: "series-retain" },
];

// `events` are the job's events of type "metrics"; each `data` has `step` and the losses.
export function lossPoints(events) {
  return events
    .filter((event) => event.type === "metrics" && event.data && Number.isFinite(event.data.step))
    .map((event) => ({ ...event.data, step: event.data.step + 1 })) // `step` counts from 0; steps done
    .sort((a, b) => a.step - b.step);
}

export function lossChart(points) {
  if (!points.length) {
    return h("p", { class: "note" }, "No losses yet: a job reports them every 10 steps and at its last step.");
  }
  const shown = SERIES.filter((s) => points.some((p) => Number.isFinite(p[s.key])));
  const x = scale(points.map((p) => p.step), MARGIN.left, WIDTH - MARGIN.right);
  const y = scale(points.flatMap((p) => shown.map((s) => p[s.key])).filter(Number.isFinite), HEIGHT - MARGIN.bottom, MARGIN.top);
  const summary = shown.map((s) => describe(s, points)).join("; ");
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "loss-chart", role: "img", "aria-label": `Loss per step: ${summary}` },
    svg("title", {}, `Loss per step: ${summary}`),
    axes(x, y),
    shown.map((s) => line(s, points, x, y)),
    legend(shown));
  const values = table("Loss values per step", ["step", ...shown.map((s) => s.label)],
    points.map((p) => [String(p.step), ...shown.map((s) => format(p[s.key]))]));
  return h("figure", { class: "chart" }, chart,
    h("details", {}, h("summary", {}, "Show the values"), values));
}

function scale(values, from, to) {
  let low = Math.min(...values), high = Math.max(...values);
  if (low === high) { // one point, or a flat line: centre it
    const pad = Math.abs(low) * 0.05 || 1;
    low -= pad; high += pad;
  }
  const map = (value) => from + ((value - low) / (high - low)) * (to - from);
  map.low = low; map.high = high;
  return map;
}

function axes(x, y) {
  const ticks = [0, 1, 2, 3, 4].map((i) => y.low + ((y.high - y.low) * i) / 4);
  const bottom = HEIGHT - MARGIN.bottom;
  return svg("g", { class: "axes" },
    svg("line", { x1: MARGIN.left, y1: bottom, x2: WIDTH - MARGIN.right, y2: bottom }),
    svg("line", { x1: MARGIN.left, y1: MARGIN.top, x2: MARGIN.left, y2: bottom }),
    ticks.map((value) => [
      svg("line", { class: "grid", x1: MARGIN.left, y1: y(value), x2: WIDTH - MARGIN.right, y2: y(value) }),
      svg("text", { x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)),
    ]),
    [x.low, x.high].map((step) => svg("text", { x: x(step), y: bottom + 16, "text-anchor": "middle" }, String(Math.round(step)))),
    svg("text", { x: (MARGIN.left + WIDTH - MARGIN.right) / 2, y: HEIGHT - 6, "text-anchor": "middle" }, "step"));
}

function line(series, points, x, y) {
  const drawn = points.filter((p) => Number.isFinite(p[series.key]));
  return svg("g", { class: series.className },
    svg("polyline", { points: drawn.map((p) => `${x(p.step)},${y(p[series.key])}`).join(" ") }),
    drawn.map((p) => svg("circle", { cx: x(p.step), cy: y(p[series.key]), r: 3.5 })));
}

function legend(shown) {
  return svg("g", { class: "legend" }, shown.map((s, i) => svg("g", { class: s.className },
    svg("line", { x1: MARGIN.left + 12 + i * 140, y1: 14, x2: MARGIN.left + 40 + i * 140, y2: 14 }),
    svg("text", { x: MARGIN.left + 46 + i * 140, y: 18 }, s.label))));
}

function describe(series, points) {
  const values = points.map((p) => p[series.key]).filter(Number.isFinite);
  return `${series.label} from ${format(values[0])} to ${format(values[values.length - 1])}`;
}

export function format(value) {
  return Number.isFinite(value) ? Number(value.toPrecision(4)).toString() : "–";
}
