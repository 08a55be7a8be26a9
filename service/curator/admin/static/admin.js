/* Curator admin dashboard: fetches the admin JSON endpoints and draws SVG charts.
 * Hand-written, no dependencies (the service runs offline). The admin token lives in
 * sessionStorage and is sent as a bearer header; the page keeps no other secret. */
"use strict";

const TOKEN_KEY = "curator.adminToken";
const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
  "#b07aa1", "#ff9da7", "#9c755f", "#5f9ed1", "#8cd17d", "#d37295"];
const RUN_PALETTE = ["#2f6fb3", "#e07b39", "#3a9b5c", "#c0392b", "#7d5ba6", "#1f9e9e",
  "#b8860b", "#d35f8d"];
const GREY = { "(other)": "#c3c8d0", "(none)": "#9aa1ab" };
const PREFERRED_FIELDS = ["difficulty", "skill", "category", "topic", "subject", "source",
  "cluster", "group", "level"];
const HISTORY_PAGE = 5000;
const MAX_POINTS = 50000;
const LAG_SAMPLES = 240;
const RUNS_PAGE = 25;
const UTILITY_TIP = "mean Û of the step's reported problems: per problem mean_i A_i·s_i (A the group-normalised advantage, s the rollout's mean token log-ratio; with rewards only, mean |A|), the unit of the client's curator/* metrics";

const S = {
  token: sessionStorage.getItem(TOKEN_KEY),
  runs: [],
  runId: null,
  by: undefined, // undefined: not chosen yet; "": no grouping
  dist: null,
  hist: { key: null, points: [], values: [] },
  colors: {}, // by-field -> {value: colour}
  lag: {}, // run id -> [{t, pending, lag}]
  compare: new Set(),
  compareData: null,
  problemId: null, // the top-problems row whose visits are shown
  runsFilter: "", // the runs list's filter text
  runsShown: RUNS_PAGE, // how many matching runs the list shows
  timer: null,
  busy: false,
  pending: false,
};

/* ---------- small helpers ---------- */

function $(id) { return document.getElementById(id); }

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function s(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v != null) node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, str, attrs) {
  const t = s("text", { x, y, ...attrs }, parent);
  t.textContent = str;
  return t;
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

function fmt(v, digits = 3) {
  if (!finite(v)) return "–";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e5) return v.toLocaleString("en-US", { maximumFractionDigits: 0 });
  if (a >= 1e3) return v.toLocaleString("en-US", { maximumFractionDigits: 1 });
  if (a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(digits)));
}

function pct(v) {
  if (!finite(v)) return "–";
  const p = v * 100;
  if (p !== 0 && Math.abs(p) < 0.1) return `${Number(p.toPrecision(2))}%`;
  return (Math.abs(p) < 10 && p !== 0 ? p.toFixed(1) : p.toFixed(0)) + "%";
}

function seconds(v) {
  if (!finite(v)) return "–";
  if (v < 1) return (v * 1000).toFixed(0) + " ms";
  if (v < 120) return v.toFixed(1) + " s";
  if (v < 7200) return (v / 60).toFixed(1) + " min";
  return (v / 3600).toFixed(1) + " h";
}

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

function ticks(min, max, count, integer) {
  if (!(max > min)) return [min];
  let step = niceStep(max - min, count);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(min / step - 1e-9) * step; v <= max + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function naturalSort(values) {
  const special = (v) => (v in GREY ? 1 : 0);
  return [...values].sort((a, b) => {
    if (special(a) !== special(b)) return special(a) - special(b);
    const na = Number(a), nb = Number(b);
    if (a !== "" && b !== "" && Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
    return a.localeCompare(b, undefined, { numeric: true });
  });
}

/** Colour per metadata value, stable for a field while the page is open. */
function colorsFor(field, values) {
  const map = (S.colors[field] = S.colors[field] || {});
  const used = new Set(Object.values(map));
  for (const v of naturalSort(values)) {
    if (map[v]) continue;
    if (GREY[v]) { map[v] = GREY[v]; continue; }
    const free = PALETTE.find((c) => !used.has(c));
    map[v] = free || PALETTE[Object.keys(map).length % PALETTE.length];
    used.add(map[v]);
  }
  return map;
}

function runColor(runId) {
  const ids = [...S.compare].sort((a, b) => a - b);
  const i = ids.indexOf(runId);
  return RUN_PALETTE[(i < 0 ? runId : i) % RUN_PALETTE.length];
}

function runLabel(r) {
  return r.name ? `#${r.run_id} ${r.name}` : `run #${r.run_id}`;
}

/** Exponential moving average, for reading noisy per-step curves. */
function smooth(points, window) {
  if (window <= 1) return points;
  const alpha = 2 / (window + 1);
  let acc = null;
  return points.map(([x, y]) => {
    if (!finite(y)) return [x, null];
    acc = acc == null ? y : alpha * y + (1 - alpha) * acc;
    return [x, acc];
  });
}

function smoothWindow(n) { return Math.min(50, Math.max(1, Math.round(n / 25))); }

/** At most `max` points, averaged within equal-width buckets (keeps charts fast). */
function thin(points, max) {
  if (points.length <= max) return points;
  const size = points.length / max;
  const out = [];
  for (let i = 0; i < max; i++) {
    const chunk = points.slice(Math.floor(i * size), Math.floor((i + 1) * size));
    const ys = chunk.map((p) => p[1]).filter(finite);
    out.push([chunk[chunk.length - 1][0], ys.length ? ys.reduce((a, b) => a + b) / ys.length : null]);
  }
  return out;
}

/* ---------- chart primitives ---------- */

function frame(box, height, margin) {
  box.replaceChildren();
  const width = Math.max(260, Math.floor(box.clientWidth || 400));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img" }, box);
  return {
    svg, width, height,
    x0: margin.left, x1: width - margin.right, y0: margin.top, y1: height - margin.bottom,
  };
}

function empty(box, message) {
  box.replaceChildren(h("div", { class: "empty" }, message));
}

function legend(box, items, kind) {
  box.append(h("div", { class: "legend" }, items.map((it) => h("span", { class: "item" },
    h("span", {
      class: "swatch" + (kind === "line" || it.kind === "line" ? " line" : ""),
      style: `background:${it.color};${it.dashed ? "opacity:.6" : ""}`,
    }), it.name))));
}

function tooltip(box) {
  let tip = box.querySelector(".tooltip");
  if (!tip) { tip = h("div", { class: "tooltip", hidden: true }); box.append(tip); }
  return tip;
}

function showTip(box, tip, px, py, head, rows) {
  tip.replaceChildren(h("div", { class: "t-head" }, head),
    ...rows.map((r) => h("div", { class: "t-row" },
      h("span", { class: "swatch", style: `background:${r.color}` }), `${r.name}: ${r.value}`)));
  tip.hidden = false;
  const bw = box.clientWidth;
  const tw = tip.offsetWidth;
  tip.style.left = `${Math.min(Math.max(0, px + 14), bw - tw - 4)}px`;
  tip.style.top = `${Math.max(0, py - 10)}px`;
}

function axes(f, xs, ys, opts) {
  const { svg, x0, x1, y0, y1 } = f;
  const g = s("g", { class: "axis" }, svg);
  for (const v of ys.ticks) {
    const y = ys.scale(v);
    s("line", { x1: x0, x2: x1, y1: y, y2: y, class: "gridline" }, g);
    text(g, x0 - 6, y + 3.5, opts.yFormat ? opts.yFormat(v) : fmt(v), { "text-anchor": "end" });
  }
  s("line", { x1: x0, x2: x1, y1: y1, y2: y1, class: "axis-line" }, g);
  for (const v of xs.ticks) {
    const x = xs.scale(v);
    s("line", { x1: x, x2: x, y1: y1, y2: y1 + 4, class: "axis-line" }, g);
    text(g, x, y1 + 16, opts.xFormat ? opts.xFormat(v) : fmt(v), { "text-anchor": "middle" });
  }
  if (opts.xLabel) {
    text(svg, (x0 + x1) / 2, f.height - 3, opts.xLabel, { class: "axis-title", "text-anchor": "middle" });
  }
  if (opts.yLabel) {
    text(svg, 12, (y0 + y1) / 2, opts.yLabel, {
      class: "axis-title", "text-anchor": "middle", transform: `rotate(-90 12 ${(y0 + y1) / 2})`,
    });
  }
}

function linearScale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function domainY(values, opts) {
  let lo = opts.yMin ?? Math.min(...values);
  let hi = opts.yMax ?? Math.max(...values);
  if (opts.yMin == null && opts.yMax == null) {
    const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
    lo -= pad; hi += pad;
    if (Math.min(...values) >= 0 && lo < 0) lo = 0;
  } else if (!(hi > lo)) {
    hi = lo + 1;
  }
  const t = ticks(lo, hi, 4);
  if (opts.yMin == null) lo = Math.min(lo, t[0]);
  if (opts.yMax == null) hi = Math.max(hi, t[t.length - 1]);
  return { lo, hi, ticks: t.filter((v) => v >= lo - 1e-12 && v <= hi + 1e-12) };
}

function nearest(points, x) {
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < x) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(points[lo - 1][0] - x) <= Math.abs(points[lo][0] - x)) lo -= 1;
  return points[lo];
}

/**
 * Line chart. series: [{name, color, points: [[x, y|null]], faint, dashed, legend}]
 * opts: xLabel, yLabel, yMin, yMax, yFormat, refs: [{y, label}], height
 */
function lineChart(box, series, opts = {}) {
  const all = series.flatMap((se) => se.points.filter((p) => finite(p[1])));
  if (!all.length) return empty(box, opts.emptyText || "No data yet.");
  const height = opts.height || 220;
  const f = frame(box, height, { top: 10, right: 14, bottom: opts.xLabel ? 34 : 22, left: 52 });
  const xsAll = all.map((p) => p[0]);
  let xMin = Math.min(...xsAll), xMax = Math.max(...xsAll);
  if (xMin === xMax) { xMin -= 1; xMax += 1; }
  const yVals = all.map((p) => p[1]).concat((opts.refs || []).map((r) => r.y));
  const yd = domainY(yVals, opts);
  const xs = { scale: linearScale(xMin, xMax, f.x0, f.x1), ticks: ticks(xMin, xMax, 6, true) };
  xs.ticks = xs.ticks.filter((v) => v >= xMin && v <= xMax);
  const ys = { scale: linearScale(yd.lo, yd.hi, f.y1, f.y0), ticks: yd.ticks };
  axes(f, xs, ys, opts);
  for (const r of opts.refs || []) {
    const y = ys.scale(r.y);
    s("line", { x1: f.x0, x2: f.x1, y1: y, y2: y, class: "ref-line" }, f.svg);
    if (r.label) text(f.svg, f.x1 - 2, y - 4, r.label, { class: "ref-label", "text-anchor": "end" });
  }
  const maxPts = Math.max(60, Math.floor((f.x1 - f.x0) / 1.5));
  const drawn = series.map((se) => ({ ...se, points: thin(se.points, maxPts) }));
  for (const se of drawn) {
    let d = "";
    let pen = false;
    const pts = se.points.filter((p) => finite(p[1]));
    for (const [x, y] of se.points) {
      if (!finite(y)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${xs.scale(x).toFixed(1)},${ys.scale(y).toFixed(1)}`;
      pen = true;
    }
    if (d) {
      s("path", {
        d, fill: "none", stroke: se.color, "stroke-width": se.faint ? 1 : 2,
        "stroke-opacity": se.faint ? 0.3 : 1, "stroke-dasharray": se.dashed ? "5 4" : null,
        "stroke-linejoin": "round", "stroke-linecap": "round", "data-series": se.name,
      }, f.svg);
    }
    if (pts.length === 1 || (!se.faint && pts.length <= 30)) {
      for (const [x, y] of pts) {
        s("circle", { cx: xs.scale(x), cy: ys.scale(y), r: 2.6, fill: se.color }, f.svg);
      }
    }
  }
  const shown = drawn.filter((se) => !se.faint && se.points.some((p) => finite(p[1])));
  hover(box, f, xs, (x) => {
    const rows = shown.map((se) => {
      const p = nearest(se.points, x);
      return { name: se.name, color: se.color, value: opts.yFormat ? opts.yFormat(p[1]) : fmt(p[1], 4), x: p[0] };
    });
    return { x: rows.length ? rows[0].x : x, head: `${opts.xName || "step"} ${fmt(rows.length ? rows[0].x : x, 6)}`, rows };
  }, xMin, xMax);
  const items = series.filter((se) => se.legend !== false).map((se) => ({ ...se, kind: "line" }));
  if (items.length) legend(box, items, "line");
}

function hover(box, f, xs, lookup, xMin, xMax) {
  const tip = tooltip(box);
  const cross = s("line", { y1: f.y0, y2: f.y1, class: "crosshair", visibility: "hidden" }, f.svg);
  const pad = s("rect", {
    x: f.x0, y: f.y0, width: f.x1 - f.x0, height: f.y1 - f.y0, fill: "transparent",
  }, f.svg);
  const invert = (px) => xMin + ((px - f.x0) / (f.x1 - f.x0)) * (xMax - xMin);
  pad.addEventListener("mousemove", (ev) => {
    const rect = f.svg.getBoundingClientRect();
    const px = ((ev.clientX - rect.left) / rect.width) * f.width;
    const info = lookup(invert(px));
    if (!info || !info.rows.length) return;
    const cx = xs.scale(info.x);
    cross.setAttribute("x1", cx); cross.setAttribute("x2", cx);
    cross.setAttribute("visibility", "visible");
    showTip(box, tip, (cx / f.width) * rect.width, ev.clientY - rect.top, info.head, info.rows);
  });
  pad.addEventListener("mouseleave", () => {
    tip.hidden = true; cross.setAttribute("visibility", "hidden");
  });
}

/** Stacked area of shares: xs [n], layers [{name, color, values [n]}] (each column sums to 1). */
function stackedArea(box, xs, layers, opts = {}) {
  if (!xs.length || !layers.length) return empty(box, opts.emptyText || "No data yet.");
  let X = xs.slice(), L = layers.map((l) => ({ ...l, values: l.values.slice() }));
  if (X.length === 1) { X = [X[0] - 0.5, X[0] + 0.5]; L.forEach((l) => l.values.push(l.values[0])); }
  const f = frame(box, opts.height || 250, { top: 10, right: 14, bottom: 34, left: 52 });
  const xMin = X[0], xMax = X[X.length - 1];
  const xsc = { scale: linearScale(xMin, xMax, f.x0, f.x1), ticks: ticks(xMin, xMax, 8, true) };
  xsc.ticks = xsc.ticks.filter((v) => v >= xMin && v <= xMax);
  const ysc = { scale: linearScale(0, 1, f.y1, f.y0), ticks: [0, 0.25, 0.5, 0.75, 1] };
  axes(f, xsc, ysc, { ...opts, yFormat: (v) => pct(v) });
  const base = new Array(X.length).fill(0);
  for (const layer of L) {
    const top = base.map((b, i) => b + (finite(layer.values[i]) ? layer.values[i] : 0));
    let d = "";
    X.forEach((x, i) => { d += `${i ? "L" : "M"}${xsc.scale(x).toFixed(1)},${ysc.scale(top[i]).toFixed(1)}`; });
    for (let i = X.length - 1; i >= 0; i--) d += `L${xsc.scale(X[i]).toFixed(1)},${ysc.scale(base[i]).toFixed(1)}`;
    s("path", { d: d + "Z", fill: layer.color, "fill-opacity": 0.88, stroke: "#fff",
      "stroke-width": 0.6, "data-series": layer.name }, f.svg);
    top.forEach((v, i) => { base[i] = v; });
  }
  const rows = X.map((x, i) => [x, i]);
  hover(box, f, xsc, (x) => {
    const [px, i] = nearest(rows, x);
    return {
      x: px, head: `step ${fmt(xs[Math.min(i, xs.length - 1)], 6)}`,
      rows: L.slice().reverse().filter((l) => finite(l.values[i]) && l.values[i] > 0)
        .map((l) => ({ name: l.name, color: l.color, value: pct(l.values[i]) })),
    };
  }, xMin, xMax);
  legend(box, layers.map((l) => ({ name: l.name, color: l.color })));
}

/** Horizontal bars with a uniform reference tick: rows [{name, color, value, ref, note}]. */
function barsH(box, rows, opts = {}) {
  if (!rows.length) return empty(box, opts.emptyText || "No data yet.");
  const rowH = Math.round(Math.min(46, Math.max(24, 210 / rows.length)));
  const labelW = Math.min(170, 26 + 7.5 * Math.max(...rows.map((r) => Math.min(22, r.name.length))));
  const height = Math.max(120, rows.length * rowH + 34);
  const barH = Math.min(22, rowH - 8);
  const f = frame(box, height, { top: 6, right: 92, bottom: 26, left: labelW });
  const top = Math.max(...rows.map((r) => Math.max(r.value, r.ref || 0)), 1e-9);
  const max = opts.max ?? Math.min(1, ticks(0, top, 4).find((v) => v >= top - 1e-12) ?? top);
  const xs = linearScale(0, max, f.x0, f.x1);
  for (const v of ticks(0, max, 4)) {
    if (v > max + 1e-12) continue;
    s("line", { x1: xs(v), x2: xs(v), y1: f.y0, y2: f.y1, class: "gridline" }, f.svg);
    text(f.svg, xs(v), f.y1 + 15, pct(v), { class: "tick-label", "text-anchor": "middle" });
  }
  rows.forEach((r, i) => {
    const y = f.y0 + i * rowH + (rowH - barH) / 2;
    const mid = y + barH / 2 + 4;
    text(f.svg, f.x0 - 8, mid, r.name.length > 22 ? r.name.slice(0, 21) + "…" : r.name,
      { class: "tick-label", "text-anchor": "end", style: "fill:#4a5566;font-size:12px" });
    s("rect", { x: f.x0, y, width: Math.max(1, xs(r.value) - f.x0), height: barH, rx: 3,
      fill: r.color, "data-series": r.name }, f.svg);
    if (finite(r.ref)) {
      s("line", { x1: xs(r.ref), x2: xs(r.ref), y1: y - 3, y2: y + barH + 3, stroke: "#1c2533",
        "stroke-width": 1.6 }, f.svg);
    }
    text(f.svg, f.x1 + 8, mid, pct(r.value), { style: "fill:#1c2533;font-size:12px;font-weight:600" });
    if (r.note) text(f.svg, f.x1 + 48, mid, r.note, { class: "tick-label" });
  });
  if (opts.legend) legend(box, opts.legend);
}

/** Grouped histogram bars over score bins: series [{name, color, values}] share the bins. */
function histogram(box, edges, series, opts = {}) {
  if (!edges || edges.length < 2) return empty(box, "No scores yet.");
  const f = frame(box, opts.height || 220, { top: 10, right: 14, bottom: 34, left: 52 });
  const nb = edges.length - 1;
  const maxV = Math.max(...series.flatMap((se) => se.values), 1e-9);
  const yd = domainY([0, maxV], { yMin: 0 });
  const ys = { scale: linearScale(0, yd.hi, f.y1, f.y0), ticks: yd.ticks };
  const lo = edges[0], hi = edges[nb];
  const xs = { scale: linearScale(lo, hi, f.x0, f.x1), ticks: ticks(lo, hi, 5) };
  xs.ticks = xs.ticks.filter((v) => v >= lo - 1e-12 && v <= hi + 1e-12);
  axes(f, xs, ys, { ...opts, yFormat: (v) => pct(v), xFormat: (v) => fmt(v, 2) });
  const bw = (f.x1 - f.x0) / nb;
  const inner = Math.max(1, (bw - 2) / series.length);
  for (let b = 0; b < nb; b++) {
    series.forEach((se, j) => {
      const v = se.values[b] || 0;
      const y = ys.scale(v);
      s("rect", { x: f.x0 + b * bw + 1 + j * inner, y, width: Math.max(0.5, inner - 0.5),
        height: Math.max(0, f.y1 - y), fill: se.color, rx: 1, "data-series": se.name }, f.svg);
    });
  }
  const rows = edges.slice(0, nb).map((e, b) => [(e + edges[b + 1]) / 2, b]);
  hover(box, f, xs, (x) => {
    const [cx, b] = nearest(rows, x);
    return { x: cx, head: `score ${fmt(edges[b], 3)} … ${fmt(edges[b + 1], 3)}`,
      rows: series.map((se) => ({ name: se.name, color: se.color, value: pct(se.values[b]) })) };
  }, lo, hi);
  legend(box, series);
}

/* ---------- data ---------- */

class AuthError extends Error {}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: `Bearer ${S.token}` } });
  let body = null;
  try { body = await resp.json(); } catch { body = null; }
  if (resp.status === 401 || resp.status === 403) {
    throw new AuthError(body?.error?.message || "the admin token was refused");
  }
  if (!resp.ok) throw new Error(body?.error?.message || `${resp.status} ${resp.statusText}`);
  return body;
}

function byParam() { return S.by ? `&by=${encodeURIComponent(S.by)}` : ""; }

async function loadHistory(runId) {
  const key = `${runId}|${S.by || ""}`;
  if (S.hist.key !== key) S.hist = { key, points: [], values: [] };
  const hist = S.hist;
  for (let guard = 0; guard < 20 && hist.points.length < MAX_POINTS; guard++) {
    const last = hist.points.length ? hist.points[hist.points.length - 1].step : null;
    const after = last == null ? "" : `&after=${last}`;
    const page = await api(`/v1/runs/${runId}/history?limit=${HISTORY_PAGE}${after}${byParam()}`);
    if (S.hist !== hist) return; // the run or field changed meanwhile
    hist.points.push(...page.points);
    for (const v of page.values) if (!hist.values.includes(v)) hist.values.push(v);
    hist.total = page.total;
    if (page.next_after == null) break;
  }
}

function chooseField(fields) {
  for (const f of PREFERRED_FIELDS) if (fields.includes(f)) return f;
  return fields[0] || "";
}

async function refresh() {
  if (!S.token) return;
  if (S.busy) { S.pending = true; return; }
  S.busy = true;
  try {
    const { runs } = await api("/v1/runs");
    S.runs = runs;
    if (!runs.length) {
      renderPicker();
      renderNoRuns();
      return;
    }
    if (!runs.some((r) => r.run_id === S.runId)) S.runId = runs[runs.length - 1].run_id;
    for (const id of [...S.compare]) if (!runs.some((r) => r.run_id === id)) S.compare.delete(id);
    renderPicker();
    renderRuns(); // the list needs nothing else: draw it now
    const runId = S.runId;
    if (S.by === undefined) {
      const probe = await api(`/v1/runs/${runId}/distribution?top=0&sample=2000`);
      S.by = chooseField(probe.fields);
    }
    // Each card is drawn as soon as its own data is in, not when the slowest answers.
    const dist = api(`/v1/runs/${runId}/distribution?top=15${byParam()}`).then((d) => {
      if (runId !== S.runId) return;
      if (S.by && !d.fields.includes(S.by)) { // a field of another bank: pick this bank's
        S.by = chooseField(d.fields);
        S.pending = true;
        return;
      }
      S.dist = d;
      const lag = (S.lag[runId] = S.lag[runId] || []);
      lag.push({ t: Date.now() / 1000, pending: d.queue.pending, lag: d.queue.lag_seconds });
      if (lag.length > LAG_SAMPLES) lag.splice(0, lag.length - LAG_SAMPLES);
      renderDistCards();
    });
    const hist = loadHistory(runId).then(() => { if (runId === S.runId) renderHistoryCards(); });
    let compare = null;
    if (S.compare.size >= 2) {
      const ids = [...S.compare].sort((a, b) => a - b).join(",");
      compare = api(`/v1/compare?runs=${ids}&top=0&points=2000${byParam()}`).then((c) => {
        S.compareData = c;
        renderCompare();
      });
    } else {
      S.compareData = null;
      renderCompare();
    }
    await Promise.all([dist, hist, compare]);
    writeHash();
    $("error-banner").hidden = true;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (err instanceof AuthError) {
      signOut(err.message);
    } else {
      $("error-banner").textContent = `Could not refresh: ${err.message}`;
      $("error-banner").hidden = false;
    }
  } finally {
    S.busy = false;
    if (S.pending) { S.pending = false; setTimeout(refresh, 0); }
  }
}

/* ---------- rendering ---------- */

function renderPicker() {
  const picker = $("run-picker");
  const want = S.runs.map((r) => `${r.run_id}:${runLabel(r)}:${r.strategy}`).join("|");
  if (picker.dataset.sig !== want) {
    picker.replaceChildren(...S.runs.map((r) =>
      h("option", { value: r.run_id }, `${runLabel(r)} · ${r.strategy}`)));
    picker.dataset.sig = want;
  }
  if (S.runId != null) picker.value = String(S.runId);
}

function renderFields(fields) {
  const picker = $("field-picker");
  const opts = [...new Set(fields)].sort(); // only the fields this run's bank has
  const sig = opts.join("|");
  if (picker.dataset.sig !== sig) {
    picker.replaceChildren(h("option", { value: "" }, "(none)"),
      ...opts.map((f) => h("option", { value: f }, f)));
    picker.dataset.sig = sig;
  }
  picker.value = S.by || "";
  for (const n of document.querySelectorAll(".by-name")) n.textContent = S.by || "field";
}

function renderNoRuns() {
  $("run-head").replaceChildren(h("h1", {}, "No runs yet"),
    h("span", { class: "meta" }, "Create a run with POST /v1/runs; it appears here."));
  $("kpis").replaceChildren();
}

function currentRun() { return S.runs.find((r) => r.run_id === S.runId); }

function renderAll() {
  renderRuns();
  renderDistCards();
  renderHistoryCards();
  renderCompare();
}

/** The cards drawn from the run's distribution (and the KPIs, which also read history). */
function renderDistCards() {
  const run = currentRun();
  const d = S.dist;
  if (!run || !d) return;
  renderFields(d.fields);
  renderHead(run, d);
  renderKpis(run, d);
  renderMassNow(d);
  renderTop(d);
  renderHist(d);
  renderQueue();
}

/** The cards drawn from the run's history. */
function renderHistoryCards() {
  const run = currentRun();
  if (!run) return;
  if (S.dist) renderKpis(run, S.dist);
  renderMassTime();
  renderSeries();
  renderControl();
}

function renderHead(run, d) {
  const phase = d.active ? h("span", { class: "badge active" }, "curator active")
    : h("span", { class: "badge warmup" }, run.strategy === "uniform" ? "uniform" : "warm-up · uniform");
  $("run-head").replaceChildren(
    h("h1", {}, runLabel(run)),
    h("span", { class: `badge ${run.status}` }, run.status), phase,
    h("span", { class: "meta" },
      `${run.strategy} · bank ${run.bank_name} (${run.bank_size.toLocaleString("en-US")} problems)` +
      ` · seed ${run.seed}` + (run.created_at ? ` · created ${new Date(run.created_at).toLocaleString()}` : "")));
}

function kpi(label, value, sub, gauge, title) {
  return h("div", { class: "kpi", title },
    h("div", { class: "label" }, label),
    h("div", { class: "value" }, value),
    h("div", { class: "sub" }, sub),
    gauge == null ? null : h("div", { class: "gauge" },
      h("span", { style: `width:${Math.max(0, Math.min(1, gauge)) * 100}%` })));
}

function lastFinite(points, key) {
  for (let i = points.length - 1; i >= 0; i--) if (finite(points[i][key])) return points[i][key];
  return null;
}

function recentMean(points, key, n) {
  const vals = points.slice(-n).map((p) => p[key]).filter(finite);
  return vals.length ? vals.reduce((a, b) => a + b) / vals.length : null;
}

function renderKpis(run, d) {
  const pts = S.hist.points;
  const q = d.queue;
  const scored = d.sampled ? `sample of ${d.n_scored.toLocaleString("en-US")}` : `${d.n_scored.toLocaleString("en-US")} problems`;
  const util = recentMean(pts, "mean_utility", 10);
  const reward = recentMean(pts, "mean_reward", 10);
  const loss = recentMean(pts, "loss", 10);
  $("kpis").replaceChildren(
    kpi("Curator", h("span", {}, d.active ? "active" : "uniform"),
      d.active ? `${run.strategy} · τ ${fmt(d.temperature)} · top-p ${fmt(d.top_p)}`
        : run.strategy === "uniform" ? "uniform strategy" : `${run.strategy} warming up`),
    kpi("Step", h("span", {}, run.step.toLocaleString("en-US")),
      `model version ${d.model_version} · ${q.applied} applied`),
    kpi("Entropy", h("span", {}, fmt(d.entropy_ratio, 3), h("small", {}, " of uniform")),
      `H ${fmt(d.entropy, 3)} nats · log n ${fmt(d.max_entropy, 3)}`, d.entropy_ratio,
      "entropy of q over the scored set divided by log(n): 1 = uniform"),
    kpi("Effective support", h("span", {}, fmt(d.effective_support, 3),
      h("small", {}, ` / ${d.n_scored.toLocaleString("en-US")}`)),
      `${pct(d.effective_share)} of ${scored}`, d.effective_share,
      "exp(entropy): the number of problems a uniform distribution with the same entropy covers"),
    kpi("Utility Û (last 10 steps)", h("span", {}, fmt(util, 3)),
      `loss ${fmt(loss, 3)}` + (finite(reward) ? ` · reward ${fmt(reward, 3)}` : ""), null,
      UTILITY_TIP),
    kpi("Queue", h("span", {}, String(q.pending), h("small", {}, " pending")),
      `lag ${seconds(q.lag_seconds)} · ${q.outstanding} unreported`, null,
      "pending: feedback reported, not yet applied by the worker; unreported: batches handed " +
      "out whose feedback has not arrived"));
}

function renderMassTime() {
  const box = $("chart-mass-time");
  if (!S.by) return empty(box, "Pick a metadata field in “Group by” to see shares over time.");
  const pts = S.hist.points.filter((p) => p.selected_by);
  if (!pts.length) return empty(box, "No applied steps yet: the worker records one point per applied ticket.");
  const values = naturalSort(S.hist.values);
  const colors = colorsFor(S.by, values.concat((S.dist?.mass_by?.groups || []).map((g) => g.value)));
  const w = smoothWindow(pts.length);
  const layers = values.map((v) => {
    const raw = pts.map((p) => [p.step, p.selected_by[v] || 0]);
    return { name: v, color: colors[v], values: thin(smooth(raw, w), 400).map((p) => p[1]) };
  });
  const xs = thin(pts.map((p) => [p.step, 0]), 400).map((p) => p[0]);
  stackedArea(box, xs, layers, { xLabel: w > 1 ? `step (moving average over ~${w} steps)` : "step",
    yLabel: "selected share" });
}

function renderMassNow(d) {
  const box = $("chart-mass-now");
  if (!S.by) return empty(box, "Pick a metadata field in “Group by”.");
  const groups = d.mass_by ? d.mass_by.groups : [];
  const colors = colorsFor(S.by, groups.map((g) => g.value).concat(S.hist.values));
  const shown = groups.slice(0, 12);
  const rest = groups.slice(12);
  const rows = shown.map((g) => ({ name: g.value, color: colors[g.value], value: g.mass, ref: g.uniform,
    note: g.uniform > 0 ? `×${fmt(g.mass / g.uniform, 2)}` : "" }));
  if (rest.length) {
    const m = rest.reduce((a, g) => a + g.mass, 0), u = rest.reduce((a, g) => a + g.uniform, 0);
    rows.push({ name: `${rest.length} more`, color: GREY["(other)"], value: m, ref: u, note: `×${fmt(m / u, 2)}` });
  }
  $("mass-now-hint").textContent = d.active
    ? `q over ${d.sampled ? "a sample of " : ""}${d.n_scored.toLocaleString("en-US")} problems; ` +
      "black tick = uniform share, ×k = mass relative to uniform"
    : "the curator is not driving selection yet: q is uniform";
  barsH(box, rows, { legend: [{ name: "curator mass (bar)", color: "#8a94a3" },
    { name: "uniform share (tick)", color: "#1c2533", kind: "line" }] });
}

function renderSeries() {
  const pts = S.hist.points;
  const rewards = pts.some((p) => finite(p.mean_reward));
  $("card-reward").hidden = !rewards;
  $("series-grid").classList.toggle("with-reward", rewards);
  const none = "No applied steps yet.";
  const w = smoothWindow(pts.length);
  const series = (key, name, color) => {
    const raw = pts.map((p) => [p.step, p[key]]);
    if (w <= 1) return [{ name, color, points: raw }];
    return [{ name: `${name} (per step)`, color, points: raw, faint: true, legend: false },
      { name: `${name} (EMA ${w})`, color, points: smooth(raw, w) }];
  };
  lineChart($("chart-entropy"), [
    ...series("entropy_ratio", "entropy / log M", "#2f6fb3"),
  ], { yMin: 0, yMax: 1.05, yFormat: (v) => fmt(v, 2), xLabel: "step", yLabel: "H / log M",
    refs: [{ y: 1, label: "uniform" }], emptyText: none });
  lineChart($("chart-utility"), series("mean_utility", "mean utility", "#3a9b5c"),
    { xLabel: "step", yLabel: "utility", emptyText: none, refs: [{ y: 0 }] });
  const w0 = rollingWindow(pts.length);
  const z = zeroSeries(pts, w0);
  lineChart($("chart-zero"), [
    { name: "curator items", color: "#2f6fb3", points: z.cur },
    { name: "explore items", color: "#e07b39", points: z.exp },
  ], { yMin: 0, yMax: 1, yFormat: pct, xLabel: `step (rolling ${w0})`, yLabel: "zero-signal share",
    emptyText: "Needs feedback with rewards (groups of rollouts)." });
  lineChart($("chart-loss"), series("loss", "loss", "#c0392b"),
    { xLabel: "step", yLabel: "loss", emptyText: "No loss recorded (this strategy has none)." });
  if (rewards) {
    lineChart($("chart-reward"), series("mean_reward", "mean reward", "#b8860b"),
      { xLabel: "step", yLabel: "reward", emptyText: none });
  }
  lineChart($("chart-source"), [
    { name: "curator", color: "#2f6fb3", points: pts.map((p) => [p.step, p.curator_share]) },
    { name: "uniform floor (explore)", color: "#e07b39", points: pts.map((p) => [p.step, p.explore_share]) },
  ], { yMin: 0, yMax: 1, yFormat: pct, xLabel: "step", yLabel: "share of batch", emptyText: none });
}

const CTL_KEYS = ["ctl_cur_n", "ctl_cur_sum", "ctl_cur_sq", "ctl_exp_n", "ctl_exp_sum", "ctl_exp_sq"];
const ZS_KEYS = ["zs_cur_n", "zs_cur_zero", "zs_exp_n", "zs_exp_zero"];

/** The rolling window of the per-step series: ~1/10 of the points, 5 to 50 steps. */
function rollingWindow(n) { return Math.max(5, Math.min(50, Math.round(n / 10))); }

/** [step, sums of `keys` over the last `window` points] for each history point holding
 * them (the per-step sums the worker keeps in each point's extra, curation/control.py). */
function rollingSums(pts, keys, window) {
  const rows = pts.filter((p) => p.extra && finite(p.extra[keys[0]]));
  const acc = keys.map(() => 0);
  const out = [];
  for (let i = 0; i < rows.length; i++) {
    keys.forEach((k, j) => { acc[j] += rows[i].extra[k]; });
    if (i >= window) keys.forEach((k, j) => { acc[j] -= rows[i - window].extra[k]; });
    out.push([rows[i].step, acc.slice()]);
  }
  return out;
}

/** Rolling share of groups with no reward variance, per source, from the per-step counts
 * the worker keeps with each history point (curation/control.py: zs_*). */
function zeroSeries(pts, window) {
  const out = { cur: [], exp: [], all: [] };
  for (const [step, [nc, zc, ne, ze]] of rollingSums(pts, ZS_KEYS, window)) {
    out.cur.push([step, nc > 0 ? zc / nc : null]);
    out.exp.push([step, ne > 0 ? ze / ne : null]);
    out.all.push([step, nc + ne > 0 ? (zc + ze) / (nc + ne) : null]);
  }
  return out;
}

/** Rolling curator − explore mean Û with a Welch 95% interval, from the per-step sums the
 * worker keeps with each history point (curation/control.py). */
function controlSeries(pts, window) {
  const out = { mid: [], low: [], high: [] };
  for (const [step, [nc, sc, qc, ne, se, qe]] of rollingSums(pts, CTL_KEYS, window)) {
    if (nc < 2 || ne < 2) { for (const s of Object.values(out)) s.push([step, null]); continue; }
    const mc = sc / nc, me = se / ne;
    const vc = Math.max(0, (qc - nc * mc * mc) / (nc - 1)), ve = Math.max(0, (qe - ne * me * me) / (ne - 1));
    const d = mc - me, half = 1.96 * Math.sqrt(vc / nc + ve / ne);
    out.mid.push([step, d]); out.low.push([step, d - half]); out.high.push([step, d + half]);
  }
  return out;
}

function renderControl() {
  const pts = S.hist.points;
  const window = rollingWindow(pts.length);
  const c = controlSeries(pts, window);
  $("control-hint").textContent = `mean Û of the curator's items minus the explore items' ` +
    `(uniform picks from the same pools), over the last ${window} steps, with its 95% ` +
    "interval: above zero, the curriculum is paying off";
  lineChart($("chart-control"), [
    { name: "curator − explore", color: "#2f6fb3", points: c.mid },
    { name: "95% interval", color: "#2f6fb3", points: c.low, dashed: true },
    { name: "95% interval (high)", color: "#2f6fb3", points: c.high, dashed: true, legend: false },
  ], { xLabel: "step", yLabel: "Δ utility", refs: [{ y: 0 }],
    emptyText: "Needs steps with both curator and explore items (after the warm-up)." });
}

function renderTop(d) {
  const box = $("top-table");
  if (!d.top.length) return box.replaceChildren(h("div", { class: "empty" }, "No problems scored."));
  const colors = S.by ? colorsFor(S.by, d.top.map((t) => String(t.metadata[S.by] ?? "(none)"))) : {};
  const maxP = Math.max(...d.top.map((t) => t.probability));
  const rows = d.top.map((t) => {
    const metaKeys = Object.keys(t.metadata).sort((a, b) => (a === S.by ? -1 : b === S.by ? 1 : a.localeCompare(b)));
    const chips = metaKeys.slice(0, 3).map((k) => {
      const v = String(t.metadata[k]);
      return h("span", { class: "chip" + (k === S.by ? " key" : "") },
        k === S.by ? h("span", { class: "dot", style: `background:${colors[v] || "#999"}` }) : null, `${k}: ${v}`);
    });
    return h("tr", { onclick: () => showProblem(t.problem_id), "data-problem": t.problem_id,
      class: S.problemId === t.problem_id ? "current" : null },
      h("td", { class: "num" }, t.rank),
      h("td", { class: "ext", title: `problem_id ${t.problem_id}` }, t.external_id),
      h("td", { class: "prompt", title: t.prompt }, t.prompt),
      h("td", { title: metaKeys.map((k) => `${k}: ${t.metadata[k]}`).join("\n") }, chips),
      h("td", { class: "num" }, fmt(t.score, 4)),
      h("td", { class: "num" }, pct(t.probability), h("span", { class: "pbar" },
        h("span", { style: `width:${(t.probability / maxP) * 100}%` }))),
      h("td", { class: "num" }, `×${fmt(t.probability * d.n_scored, 3)}`));
  });
  const cols = [34, 124, null, 180, 70, 124, 92];
  box.replaceChildren(h("table", { id: "top-problems", class: "fixed" },
    h("colgroup", {}, cols.map((w) => h("col", { style: w ? `width:${w}px` : null }))),
    h("thead", {}, h("tr", {}, h("th", { class: "num" }, "#"), h("th", {}, "external id"),
      h("th", {}, "prompt"), h("th", {}, "metadata"), h("th", { class: "num" }, "score"),
      h("th", { class: "num" }, "probability"), h("th", { class: "num", title: "q × n" }, "vs uniform"))),
    h("tbody", {}, rows)));
}

async function showProblem(problemId) {
  S.problemId = problemId;
  const box = $("problem-detail");
  const runId = S.runId;
  box.hidden = false;
  box.replaceChildren(h("div", { class: "empty" }, "Loading…"));
  for (const tr of document.querySelectorAll("#top-problems tbody tr")) {
    tr.classList.toggle("current", Number(tr.dataset.problem) === problemId);
  }
  let p;
  try {
    p = await api(`/v1/runs/${runId}/problems/${problemId}?limit=50`);
  } catch (err) {
    box.replaceChildren(h("div", { class: "empty" }, `Could not load: ${err.message}`));
    return;
  }
  if (runId !== S.runId || S.problemId !== problemId) return;
  const rows = p.visits.map((v) => h("tr", {},
    h("td", { class: "num" }, v.step), h("td", { class: "num" }, `v${v.model_version}`),
    h("td", {}, v.source), h("td", { class: "num" }, fmt(v.logit, 3)),
    h("td", { class: "num" }, fmt(v.propensity, 4)),
    h("td", { class: "num", title: UTILITY_TIP }, fmt(v.utility, 4)),
    h("td", { class: "num" }, fmt(v.mean_reward, 3)),
    h("td", { class: "rewards" }, v.rewards ? v.rewards.map((r) => fmt(r, 2)).join(" ") : "–")));
  box.replaceChildren(
    h("h3", {}, `${p.external_id} · problem ${p.problem_id} · selected ${p.visits.length}` +
      (p.visits.length === 50 ? "+ times (newest 50)" : " times")),
    h("div", { class: "prompt-full" }, p.prompt),
    h("div", { class: "meta" }, Object.entries(p.metadata).map(([k, v]) => `${k}: ${v}`).join(" · ")),
    p.visits.length ? h("div", { class: "table-wrap" }, h("table", { id: "problem-visits" },
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "step"), h("th", { class: "num" }, "version"),
        h("th", {}, "source"), h("th", { class: "num" }, "logit"),
        h("th", { class: "num", title: "q(x): the probability it was drawn with" }, "propensity"),
        h("th", { class: "num", title: UTILITY_TIP }, "Û"), h("th", { class: "num" }, "reward"),
        h("th", {}, "rewards"))),
      h("tbody", {}, rows)))
      : h("div", { class: "empty" }, "Not selected by this run yet."));
}

function renderHist(d) {
  const hg = d.histogram;
  if (!hg) return empty($("chart-hist"), "No scores yet.");
  const n = hg.counts.reduce((a, b) => a + b, 0) || 1;
  histogram($("chart-hist"), hg.edges, [
    { name: "share of problems", color: "#b5bdc8", values: hg.counts.map((c) => c / n) },
    { name: "curator mass", color: "#2f6fb3", values: hg.mass },
  ], { xLabel: "score (logit)", yLabel: "share" });
}

function renderQueue() {
  const samples = S.lag[S.runId] || [];
  if (!samples.length) return empty($("chart-queue"), "Sampling…");
  const t0 = samples[0].t;
  lineChart($("chart-queue"), [
    { name: "pending tickets", color: "#7d5ba6", points: samples.map((p) => [p.t - t0, p.pending]) },
    { name: "lag (s)", color: "#1f9e9e", points: samples.map((p) => [p.t - t0, p.lag]), dashed: true },
  ], { yMin: 0, xLabel: "seconds since this page opened", xName: "t +", yLabel: "tickets / s" });
}

function runMatches(r, q) {
  return !q || `${r.run_id} ${runLabel(r)} ${r.strategy} ${r.status} ${r.bank_name}`
    .toLowerCase().includes(q);
}

function renderRuns() {
  const q = S.runsFilter.trim().toLowerCase();
  const matching = S.runs.filter((r) => runMatches(r, q)).reverse(); // newest first
  // a page of the matching runs, plus the shown and compared ones if they match
  const keep = (r) => r.run_id === S.runId || S.compare.has(r.run_id);
  const shown = matching.filter((r, i) => i < S.runsShown || keep(r));
  const more = matching.length - shown.length;
  $("runs-count").textContent = q ? `${matching.length} of ${S.runs.length} runs match`
    : `${S.runs.length} runs`;
  const moreButton = $("runs-more");
  moreButton.hidden = more <= 0;
  moreButton.textContent = `show ${Math.min(more, RUNS_PAGE)} more (${more} not shown)`;
  const rows = shown.map((r) => {
    const check = h("input", { type: "checkbox", "aria-label": `compare run ${r.run_id}`,
      checked: S.compare.has(r.run_id), onclick: (ev) => ev.stopPropagation(),
      onchange: (ev) => { ev.target.checked ? S.compare.add(r.run_id) : S.compare.delete(r.run_id); refresh(); } });
    const last = r.last || {};
    return h("tr", { class: "clickable" + (r.run_id === S.runId ? " current" : ""),
      onclick: () => selectRun(r.run_id), "data-run": r.run_id },
      h("td", {}, check),
      h("td", { title: `bank ${r.bank_name} (${r.bank_size} problems)` }, h("strong", {}, runLabel(r))),
      h("td", {}, r.strategy),
      h("td", {}, h("span", { class: `badge ${r.status}` }, r.status)),
      h("td", { class: "num" }, `${r.step.toLocaleString("en-US")} · v${r.model_version}`),
      h("td", { class: "num" }, `${r.queue.pending} · ${seconds(r.queue.lag_seconds)}`),
      h("td", { class: "num" }, fmt(last.mean_utility, 3)),
      h("td", { class: "num" }, fmt(last.entropy_ratio, 3)),
      h("td", { class: "num" }, pct(last.curator_share)));
  });
  $("runs-table").replaceChildren(h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, h("th", {}, "compare"), h("th", {}, "run"), h("th", {}, "strategy"),
      h("th", {}, "status"), h("th", { class: "num" }, "step · version"),
      h("th", { class: "num" }, "pending · lag"),
      h("th", { class: "num", title: UTILITY_TIP + " (the last applied step)" }, "Û (last step)"),
      h("th", { class: "num" }, "H / log M"),
      h("th", { class: "num" }, "curator"))),
    h("tbody", {}, rows)));
}

function renderCompare() {
  const card = $("card-compare");
  const c = S.compareData;
  if (!c || S.compare.size < 2) { card.hidden = true; return; }
  card.hidden = false;
  $("compare-hint").textContent = `${c.runs.length} runs side by side` +
    (c.by ? `, grouped by ${c.by}` : "") + "; each run's current curator scored on the same problems";
  const entropy = [], utility = [], reward = [], rewardN = [], zero = [];
  for (const x of c.runs) {
    const color = runColor(x.run.run_id);
    const name = runLabel(x.run);
    const pts = x.history.points;
    const w = smoothWindow(pts.length);
    entropy.push({ name, color, points: smooth(pts.map((p) => [p.step, p.entropy_ratio]), w) });
    utility.push({ name, color, points: smooth(pts.map((p) => [p.step, p.mean_utility]), w) });
    const r = smooth(pts.map((p) => [p.step, p.mean_reward]), w);
    reward.push({ name, color, points: r });
    let seen = 0; // problems trained on so far (reported items of applied steps)
    const cum = pts.map((p) => (seen += p.n_items || 0));
    rewardN.push({ name, color, points: r.map((pt, i) => [cum[i], pt[1]]) });
    zero.push({ name, color, points: zeroSeries(pts, rollingWindow(pts.length)).all });
  }
  const noReward = "No rewards reported (utility-only feedback).";
  lineChart($("chart-cmp-reward"), reward, { xLabel: "step", yLabel: "mean reward", emptyText: noReward });
  lineChart($("chart-cmp-reward-n"), rewardN, { xLabel: "problems trained on", xName: "problems",
    yLabel: "mean reward", emptyText: noReward });
  lineChart($("chart-cmp-zero"), zero, { yMin: 0, yMax: 1, yFormat: pct, xLabel: "step",
    yLabel: "zero-signal share", emptyText: noReward });
  lineChart($("chart-cmp-entropy"), entropy, { yMin: 0, yMax: 1.05, xLabel: "step",
    yFormat: (v) => fmt(v, 2), refs: [{ y: 1, label: "uniform" }] });
  lineChart($("chart-cmp-utility"), utility, { xLabel: "step", refs: [{ y: 0 }] });
  // numbers the trainers reported (POST /v1/runs/{run}/metrics), e.g. eval accuracy:
  // the first name every compared run has, else the first any has
  const names = c.runs.map((x) => Object.keys(x.metrics || {}));
  const shared = names.length ? names[0].filter((n) => names.every((ns) => ns.includes(n))) : [];
  const metric = shared.sort()[0] || [...new Set(names.flat())].sort()[0];
  $("cmp-metric-cell").hidden = !metric;
  if (metric) {
    $("cmp-metric-title").textContent = `${metric} (reported by the trainer)`;
    lineChart($("chart-cmp-metric"), c.runs.filter((x) => x.metrics?.[metric]).map((x) => ({
      name: runLabel(x.run), color: runColor(x.run.run_id), points: x.metrics[metric] })),
      { xLabel: "trainer step", yLabel: metric });
  }
  renderCompareMass(c);
  const cell = (fn) => c.runs.map((x) => h("td", { class: "num" }, fn(x)));
  const row = (label, fn) => h("tr", {}, h("th", {}, label), cell(fn));
  $("compare-table").replaceChildren(h("table", { id: "compare" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), c.runs.map((x) => h("th", { class: "num" },
      h("span", { class: "chip", style: `background:${runColor(x.run.run_id)};color:#fff` }, runLabel(x.run)))))),
    h("tbody", {},
      row("strategy", (x) => x.run.strategy),
      row("curator", (x) => (x.distribution.active ? "active" : "uniform")),
      row("step · version", (x) => `${x.run.step} · v${x.distribution.model_version}`),
      row("entropy / log n", (x) => fmt(x.distribution.entropy_ratio, 3)),
      row("effective support", (x) => `${fmt(x.distribution.effective_support, 3)} (${pct(x.distribution.effective_share)})`),
      row("largest group", (x) => {
        const g = x.distribution.mass_by?.groups[0];
        return g ? `${g.value}: ${pct(g.mass)}` : "–";
      }),
      row("mean reward (last 10)", (x) => fmt(recentMean(x.history.points, "mean_reward", 10), 3)),
      row("utility Û (last 10)", (x) => fmt(recentMean(x.history.points, "mean_utility", 10), 3)),
      row("queue pending · lag", (x) => `${x.run.queue.pending} · ${seconds(x.run.queue.lag_seconds)}`))));
}

function renderCompareMass(c) {
  const box = $("chart-cmp-mass");
  if (!c.by) return empty(box, "Pick a metadata field in “Group by”.");
  const values = naturalSort([...new Set(c.runs.flatMap((x) => (x.distribution.mass_by?.groups || []).map((g) => g.value)))]);
  const colors = colorsFor(c.by, values);
  const rowH = 30;
  const f = frame(box, Math.max(120, c.runs.length * rowH + 40), { top: 8, right: 12, bottom: 24, left: 150 });
  const xs = linearScale(0, 1, f.x0, f.x1);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    s("line", { x1: xs(v), x2: xs(v), y1: f.y0, y2: f.y1, class: "gridline" }, f.svg);
    text(f.svg, xs(v), f.y1 + 15, pct(v), { class: "tick-label", "text-anchor": "middle" });
  }
  c.runs.forEach((x, i) => {
    const y = f.y0 + i * rowH + 4;
    const label = runLabel(x.run);
    const t = text(f.svg, f.x0 - 8, y + 14, label.length > 20 ? `${label.slice(0, 19)}…` : label,
      { class: "tick-label", "text-anchor": "end", style: "fill:#4a5566;font-size:12px" });
    s("title", {}, t).textContent = label;
    let acc = 0;
    const groups = x.distribution.mass_by?.groups || [];
    for (const v of values) {
      const g = groups.find((gg) => gg.value === v);
      if (!g || g.mass <= 0) continue;
      const r = s("rect", { x: xs(acc), y, width: Math.max(0.5, xs(acc + g.mass) - xs(acc)), height: 20,
        fill: colors[v], "data-series": v }, f.svg);
      s("title", {}, r).textContent = `${v}: ${pct(g.mass)} (uniform ${pct(g.uniform)})`;
      acc += g.mass;
    }
  });
  legend(box, values.map((v) => ({ name: v, color: colors[v] })));
}

/* ---------- state, navigation, auth ---------- */

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("run")) S.runId = Number(p.get("run"));
  if (p.has("by")) S.by = p.get("by");
  if (p.get("cmp")) for (const id of p.get("cmp").split(",")) if (id) S.compare.add(Number(id));
}

function writeHash() {
  const p = new URLSearchParams();
  if (S.runId != null) p.set("run", S.runId);
  if (S.by !== undefined) p.set("by", S.by);
  if (S.compare.size) p.set("cmp", [...S.compare].sort((a, b) => a - b).join(","));
  history.replaceState(null, "", `#${p.toString()}`);
}

function selectRun(id) {
  if (id === S.runId) return;
  const bank = (r) => r && r.bank_id;
  if (bank(currentRun()) !== bank(S.runs.find((r) => r.run_id === id))) S.by = undefined;
  S.runId = id;
  S.dist = null;
  S.problemId = null;
  $("problem-detail").hidden = true;
  $("run-picker").value = String(id);
  refresh();
}

function schedule() {
  clearInterval(S.timer);
  const every = Number($("refresh").value);
  if (every > 0) S.timer = setInterval(() => { if (!document.hidden) refresh(); }, every * 1000);
}

function showDashboard() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("controls").hidden = false;
  schedule();
  refresh();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = null;
  clearInterval(S.timer);
  $("dash").hidden = true;
  $("controls").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  S.token = token;
  try {
    await api("/v1/runs");
  } catch (err) {
    S.token = null;
    $("login-error").textContent = err instanceof AuthError
      ? `Token refused: ${err.message}` : `Could not reach the service: ${err.message}`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-error").textContent = "";
  showDashboard();
}

function init() {
  readHash();
  $("login-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut("Signed out."));
  $("refresh").addEventListener("change", schedule);
  $("run-picker").addEventListener("change", (ev) => selectRun(Number(ev.target.value)));
  $("field-picker").addEventListener("change", (ev) => { S.by = ev.target.value; refresh(); });
  $("runs-filter").addEventListener("input", (ev) => {
    S.runsFilter = ev.target.value;
    S.runsShown = RUNS_PAGE;
    renderRuns();
  });
  $("runs-more").addEventListener("click", () => { S.runsShown += RUNS_PAGE; renderRuns(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderAll, 150);
  });
  if (S.token) showDashboard(); else signOut("");
}

init();
