// Sluice dashboard charts: small dependency-free SVG charts (candlesticks with volume and
// moving averages, multi-line, bars). Part of sluice-dashboard (Apache-2.0).
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#4c9be8", "#ffb347", "#b48ef0", "#3dd6c6", "#ff7eb6", "#c5e06b", "#f0e442", "#9aa0a6"];
  const UP = "#26a69a";
  const DOWN = "#ef5350";
  const GRID = "#2b2f3a";
  const TEXT = "#a3a8b4";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function title(node, text) {
    const t = el("title", {}, node);
    t.textContent = text;
  }

  // Round "nice" tick values covering [min, max].
  function ticks(min, max, count) {
    if (!isFinite(min) || !isFinite(max)) return [];
    if (min === max) { min -= Math.abs(min) * 0.01 || 1; max += Math.abs(max) * 0.01 || 1; }
    const raw = (max - min) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(v);
    return out;
  }

  // `extra` more decimals than the default, for axis labels that would otherwise repeat.
  function fmtNum(v, extra = 0) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(2 + extra) + "B";
    if (a >= 1e6) return (v / 1e6).toFixed(2 + extra) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1 + extra) + "k";
    if (a >= 100) return v.toFixed(2 + extra);
    if (a >= 1) return v.toFixed(3 + extra);
    if (a === 0) return "0";
    return v.toPrecision(3 + extra);
  }

  // Labels for axis ticks: as many decimals as it takes for no two to read the same (a narrow
  // range of millions would otherwise print "2.08M" three times).
  function fmtTicks(values) {
    for (let extra = 0; extra < 8; extra++) {
      const labels = values.map((v) => fmtNum(v, extra));
      if (new Set(labels).size === labels.length) return labels;
    }
    return values.map((v) => String(v));
  }

  function fmtTime(ms, spanMs) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    const hm = p(d.getHours()) + ":" + p(d.getMinutes());
    return spanMs > 2 * 86400000 ? p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + hm : hm;
  }

  function frame(container, height) {
    container.textContent = "";
    const width = Math.max(280, container.clientWidth || 600);
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart-svg", role: "img" }, null);
    container.appendChild(svg);
    return { svg, width, height };
  }

  function empty(container, text) {
    container.textContent = "";
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text || "No data for this selection.";
    container.appendChild(p);
  }

  function yAxis(svg, box, min, max, scale, width) {
    const values = ticks(min, max, 4);
    const labels = fmtTicks(values);
    values.forEach((v, i) => {
      const y = scale(v);
      el("line", { x1: box.left, x2: width - box.right, y1: y, y2: y, stroke: GRID }, svg);
      const t = el("text", { x: width - box.right + 4, y: y + 4, fill: TEXT, "font-size": 11 }, svg);
      t.textContent = labels[i];
    });
  }

  function xAxis(svg, box, t0, t1, xs, y) {
    const n = Math.max(2, Math.floor((box.w || 400) / 110));
    for (let i = 0; i <= n; i++) {
      const t = t0 + ((t1 - t0) * i) / n;
      const t_ = el("text", { x: xs(t), y, fill: TEXT, "font-size": 11, "text-anchor": i === 0 ? "start" : i === n ? "end" : "middle" }, svg);
      t_.textContent = fmtTime(t, t1 - t0);
    }
  }

  function path(points) {
    let d = "";
    let pen = false;
    for (const [x, y] of points) {
      if (y === null || !isFinite(y)) { pen = false; continue; }
      d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      pen = true;
    }
    return d;
  }

  // candles: [[t, o, h, l, c, v]...]; ma7/ma25 aligned arrays (null-padded).
  function candles(container, data) {
    const rows = data.candles || [];
    if (!rows.length) return empty(container);
    const { svg, width, height } = frame(container, 340);
    const box = { left: 8, right: 62, top: 10, bottom: 20 };
    const priceH = 230;
    const volTop = box.top + priceH + 12;
    const volH = height - volTop - box.bottom;
    box.w = width - box.left - box.right;
    const t0 = rows[0][0];
    const t1 = rows[rows.length - 1][0];
    const slot = box.w / rows.length;
    const xi = (i) => box.left + slot * (i + 0.5);
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of rows) { lo = Math.min(lo, r[3]); hi = Math.max(hi, r[2]); }
    for (const m of [data.ma7, data.ma25]) for (const v of m || []) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.05;
    lo -= pad; hi += pad;
    const ys = (v) => box.top + priceH - ((v - lo) / (hi - lo)) * priceH;
    yAxis(svg, box, lo, hi, ys, width);
    const vmax = Math.max(...rows.map((r) => r[5]), 0) || 1;
    const vs = (v) => volTop + volH - (v / vmax) * volH;
    const bodyW = Math.max(1, Math.min(12, slot * 0.7));
    rows.forEach((r, i) => {
      const [t, o, h, l, c, v] = r;
      const color = c >= o ? UP : DOWN;
      const x = xi(i);
      const g = el("g", { class: "candle" }, svg);
      el("line", { x1: x, x2: x, y1: ys(h), y2: ys(l), stroke: color }, g);
      const top = ys(Math.max(o, c));
      el("rect", { x: x - bodyW / 2, y: top, width: bodyW, height: Math.max(1, ys(Math.min(o, c)) - top), fill: color }, g);
      el("rect", { x: x - bodyW / 2, y: vs(v), width: bodyW, height: Math.max(0.5, volTop + volH - vs(v)), fill: color, opacity: 0.45 }, g);
      title(g, `${new Date(t).toLocaleString()}\nO ${fmtNum(o)}  H ${fmtNum(h)}  L ${fmtNum(l)}  C ${fmtNum(c)}\nVol ${fmtNum(v)}`);
    });
    const lines = [["MA7", data.ma7, COLORS[1]], ["MA25", data.ma25, COLORS[2]]];
    for (const [, values, color] of lines) {
      const d = path((values || []).map((v, i) => [xi(i), v === null ? null : ys(v)]));
      if (d) el("path", { d, fill: "none", stroke: color, "stroke-width": 1.5 }, svg);
    }
    const lt = el("text", { x: box.left + 4, y: box.top + 12, "font-size": 11, fill: TEXT }, svg);
    lt.innerHTML = `<tspan fill="${COLORS[1]}">━ MA7</tspan>  <tspan fill="${COLORS[2]}">━ MA25</tspan>  <tspan>volume ▁</tspan>`;
    xAxis(svg, box, t0, t1, (t) => (t1 === t0 ? box.left : box.left + slot / 2 + ((t - t0) / (t1 - t0)) * (box.w - slot)), height - 4);
  }

  // series: [{name, points: [[t, v]...], color?, dash?}]
  function lines(container, series, opts) {
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
    if (!all.length) return empty(container);
    const { svg, width, height } = frame(container, (opts && opts.height) || 280);
    const box = { left: 8, right: 62, top: 26, bottom: 20 };
    box.w = width - box.left - box.right;
    const h = height - box.top - box.bottom;
    let t0 = Math.min(...all.map((p) => p[0]));
    let t1 = Math.max(...all.map((p) => p[0]));
    if (t0 === t1) { t0 -= 30000; t1 += 30000; }
    let lo = Math.min(...all.map((p) => p[1]));
    let hi = Math.max(...all.map((p) => p[1]));
    if (lo === hi) { lo -= Math.abs(lo) * 0.01 || 1; hi += Math.abs(hi) * 0.01 || 1; }
    const pad = (hi - lo) * 0.05;
    lo -= pad; hi += pad;
    const xs = (t) => box.left + ((t - t0) / (t1 - t0)) * box.w;
    const ys = (v) => box.top + h - ((v - lo) / (hi - lo)) * h;
    yAxis(svg, box, lo, hi, ys, width);
    let lx = box.left + 4;
    series.forEach((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const d = path(s.points.map(([t, v]) => [xs(t), v === null ? null : ys(v)]));
      const p = el("path", { d, fill: "none", stroke: color, "stroke-width": s.width || 1.6 }, svg);
      if (s.dash) p.setAttribute("stroke-dasharray", s.dash);
      title(p, s.name);
      const label = el("text", { x: lx, y: 14, "font-size": 11, fill: color }, svg);
      label.textContent = "━ " + s.name;
      lx += 24 + s.name.length * 7;
    });
    xAxis(svg, box, t0, t1, xs, height - 4);
  }

  // items: [{label, value}]; positive bars green (or the given color), negative red.
  function bars(container, items, opts) {
    const rows = items.filter((i) => i.value !== null && isFinite(i.value));
    if (!rows.length) return empty(container);
    const o = opts || {};
    const { svg, width, height } = frame(container, o.height || 240);
    const box = { left: 8, right: 62, top: 10, bottom: 22 };
    box.w = width - box.left - box.right;
    const h = height - box.top - box.bottom;
    const lo = Math.min(0, ...rows.map((r) => r.value));
    const hi = Math.max(0, ...rows.map((r) => r.value));
    const span = hi - lo || 1;
    const ys = (v) => box.top + h - ((v - lo) / span) * h;
    yAxis(svg, box, lo, hi, ys, width);
    const slot = box.w / rows.length;
    rows.forEach((r, i) => {
      const x = box.left + slot * i + slot * 0.15;
      const y = ys(Math.max(0, r.value));
      const color = o.color ? o.color : r.value >= 0 ? UP : DOWN;
      const rect = el("rect", { x, y, width: slot * 0.7, height: Math.max(1, Math.abs(ys(r.value) - ys(0))), fill: color, class: "bar" }, svg);
      title(rect, `${r.label}: ${o.format ? o.format(r.value) : fmtNum(r.value)}`);
      const t = el("text", { x: x + slot * 0.35, y: height - 6, "font-size": 11, fill: TEXT, "text-anchor": "middle" }, svg);
      const fit = Math.max(3, Math.floor(slot / 6.5));
      t.textContent = r.label.length > fit ? r.label.slice(0, fit - 1) + "…" : r.label;
    });
    el("line", { x1: box.left, x2: width - box.right, y1: ys(0), y2: ys(0), stroke: TEXT }, svg);
  }

  return { candles, lines, bars, empty, fmtNum, COLORS };
})();
