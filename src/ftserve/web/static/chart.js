// The line charts, drawn by hand as inline SVG: no chart library can be used without a CDN or
// a build step, and a line chart is only axes, ticks, polylines and a legend.

import { svgEl } from "./dom.js";

const W = 560;
const H = 260;
const M = { l: 46, r: 14, t: 34, b: 30 };

function niceTicks(lo, hi, count) {
  const span = hi - lo || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f >= 7.5 ? 10 : f >= 3.5 ? 5 : f >= 1.5 ? 2 : 1) * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.round(v / step) * step);
  }
  return { ticks, step };
}

function tickLabel(v, step) {
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  return v.toFixed(Math.min(digits, 4));
}

// The values' span with a margin, widened to whole ticks and kept within [floor, cap]: a loss
// that moves between 4.7 and 5.7 fills the chart instead of a tenth of it.
export function yRange(series, floor, cap, empty) {
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  if (!values.length) return empty;
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 0.5;
  lo = Math.max(floor, lo - pad);
  hi = Math.min(cap, hi + pad);
  const { step } = niceTicks(lo, hi, 5);
  return [Math.max(floor, Math.floor(lo / step) * step), Math.min(cap, Math.ceil(hi / step) * step)];
}

// series: [{cls, label, points: [[step, value]…], dots}]; a value reads as a percent, or with
// `digits` decimals. Draws into svg, returns the scales.
export function drawChart(svg, { series, xMax, yMin, yMax, percent, digits = 4, placeholder }) {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const plotW = W - M.l - M.r;
  const plotH = H - M.t - M.b;
  const x = (s) => M.l + (s / xMax) * plotW;
  const y = (v) => M.t + plotH - ((v - yMin) / (yMax - yMin || 1)) * plotH;
  const nodes = [];

  const yt = niceTicks(yMin, yMax, 5);
  for (const v of yt.ticks) {
    nodes.push(svgEl("line", { class: "grid-line", x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }));
    const label = percent ? `${Math.round(v * 100)}%` : tickLabel(v, yt.step);
    nodes.push(svgEl("text", { x: M.l - 8, y: y(v) + 4, "text-anchor": "end" }, label));
  }
  const xt = niceTicks(0, xMax, 6);
  for (const s of xt.ticks) {
    if (!Number.isInteger(s)) continue;
    nodes.push(svgEl("line", { class: "axis", x1: x(s), x2: x(s), y1: M.t + plotH, y2: M.t + plotH + 4 }));
    nodes.push(svgEl("text", { x: x(s), y: M.t + plotH + 17, "text-anchor": "middle" }, String(s)));
  }
  nodes.push(svgEl("line", { class: "axis", x1: M.l, x2: W - M.r, y1: M.t + plotH, y2: M.t + plotH }));
  nodes.push(svgEl("text", { x: W - M.r, y: H - 1, "text-anchor": "end" }, "step"));

  let legendX = M.l;
  for (const s of series) {
    if (s.points.length) {
      const pts = s.points.map(([sx, sv]) => `${x(sx).toFixed(1)},${y(sv).toFixed(1)}`).join(" ");
      nodes.push(svgEl("polyline", { class: `series ${s.cls}`, points: pts, "data-series": s.key }));
      if (s.dots) {
        for (const [sx, sv] of s.points) {
          nodes.push(svgEl("circle", { class: `dot ${s.cls}`, cx: x(sx), cy: y(sv), r: 2.6 }));
        }
      }
    }
    if (!s.points.length && s.optional) continue;
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    nodes.push(svgEl("line", { class: `swatch ${s.cls}`, x1: legendX, x2: legendX + 14, y1: 12, y2: 12 }));
    const text = svgEl("text", { class: "legend", x: legendX + 20, y: 16 }, `${s.label} `);
    const valueText = last === null ? "—" : percent ? `${(last * 100).toFixed(1)}%` : last.toFixed(digits);
    text.append(svgEl("tspan", { class: "val" }, valueText));
    nodes.push(text);
    legendX += 34 + (s.label.length + valueText.length) * 6.4;
  }
  if (placeholder) {
    nodes.push(svgEl("text", { class: "placeholder", x: M.l + plotW / 2, y: M.t + plotH / 2, "text-anchor": "middle" }, placeholder));
  }
  svg.replaceChildren(...nodes);
  return { x, y, plotW, plotH };
}

// A hover cursor: the nearest step's values in a small box. getState() answers the chart's
// {rows, stepOf(row), scale, xMax, describe(row)}, or null before the first draw.
export function attachCursor(svg, getState) {
  const layer = () => svg.querySelector("g.hover");
  svg.addEventListener("mouseleave", () => layer()?.remove());
  svg.addEventListener("mousemove", (ev) => {
    const state = getState();
    if (!state || !state.rows.length) return;
    const box = svg.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    const step = ((px - M.l) / state.scale.plotW) * state.xMax;
    let lo = 0;
    let hi = state.rows.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (state.stepOf(state.rows[mid]) < step) lo = mid + 1; else hi = mid;
    }
    const distance = (i) => Math.abs(state.stepOf(state.rows[i]) - step);
    if (lo > 0 && distance(lo - 1) < distance(lo)) lo -= 1;
    const row = state.rows[lo];
    const lines = [`step ${state.stepOf(row)}`, ...state.describe(row)];
    layer()?.remove();
    const g = svgEl("g", { class: "hover" });
    const cx = state.scale.x(state.stepOf(row));
    g.append(svgEl("line", { class: "cursor", x1: cx, x2: cx, y1: M.t, y2: H - M.b }));
    const tipW = 150;
    const tipH = 14 * lines.length + 10;
    const tx = cx + 10 + tipW > W ? cx - 10 - tipW : cx + 10;
    const tip = svgEl("g", { class: "tip" });
    tip.append(svgEl("rect", { x: tx, y: M.t, width: tipW, height: tipH, rx: 5 }));
    lines.forEach((line, i) => tip.append(svgEl("text", { x: tx + 8, y: M.t + 17 + i * 14 }, line)));
    g.append(tip);
    svg.append(g);
  });
}
