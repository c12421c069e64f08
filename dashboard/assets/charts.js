// Sluice dashboard charts: candlesticks (with volume and moving averages) and lines as
// interactive canvas charts on the vendored TradingView Lightweight Charts (assets/vendor), and
// bar charts of rankings as small SVGs. Part of sluice-dashboard (Apache-2.0).
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

  // ---- interactive time charts (TradingView Lightweight Charts, vendored) ----------------
  //
  // Candlesticks and lines are canvas charts with zoom (mouse wheel, pinch), pan (drag),
  // a crosshair, and a legend that shows the values under it. Each chart has a key; a chart
  // drawn again under the same key (every live refresh rebuilds the tab) keeps the range the
  // user zoomed or panned to. Double-click resets it.

  const LWC = window.LightweightCharts;
  const views = new Map(); // key -> {chart, node, zoomed range or null}

  // Digits after the decimal point that tell apart prices `step` apart (may be negative).
  function digitsFor(values) {
    const finite = values.filter((v) => v !== null && isFinite(v));
    if (!finite.length) return 2;
    const lo = Math.min(...finite);
    const hi = Math.max(...finite);
    const step = (hi - lo) / 200 || Math.abs(hi) / 1e4 || 1e-2;
    return Math.max(-9, Math.min(10, Math.ceil(-Math.log10(step))));
  }

  // A price format whose axis labels never repeat: ticks are multiples of `minMove`, printed
  // with as many decimals as it has (`compact`: with k/M/B suffixes, for volumes).
  function priceFormat(values, compact) {
    const digits = digitsFor(values);
    const fixed = (v, d) => v.toFixed(Math.max(0, d));
    const formatter = (v) => {
      const a = compact ? Math.abs(v) : 0;
      if (a >= 1e9) return fixed(v / 1e9, digits + 9) + "B";
      if (a >= 1e6) return fixed(v / 1e6, digits + 6) + "M";
      if (a >= 1e4) return fixed(v / 1e3, digits + 3) + "k";
      return fixed(v, digits);
    };
    return { type: "custom", minMove: Math.pow(10, -digits), formatter };
  }

  // A value in a legend: exact to 8 significant digits, with thousands separators.
  const precise = (v) => (v === null || v === undefined || !isFinite(v) ? "–" : v.toLocaleString("en-US", { maximumSignificantDigits: 8 }));

  const seconds = (ms) => Math.floor(ms / 1000);
  const localTime = (t) => {
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  const tickMark = (t, type) => {
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    // TickMarkType: 0 year, 1 month, 2 day of month, 3 time, 4 time with seconds.
    if (type <= 1) return `${d.getFullYear()}-${p(d.getMonth() + 1)}`;
    if (type === 2) return `${p(d.getMonth() + 1)}-${p(d.getDate())}`;
    return `${p(d.getHours())}:${p(d.getMinutes())}` + (type === 4 ? `:${p(d.getSeconds())}` : "");
  };

  // A chart in `container` under `key`, replacing the previous one drawn under that key.
  function timeChart(container, key, height) {
    const previous = views.get(key);
    let zoomed = null;
    if (previous) {
      zoomed = previous.zoomed;
      previous.chart.remove();
    }
    container.textContent = "";
    container.classList.add("time-chart");
    container.style.height = height + "px";
    const legend = document.createElement("div");
    legend.className = "chart-legend";
    container.appendChild(legend);
    const chart = LWC.createChart(container, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: TEXT, fontSize: 11 },
      grid: { vertLines: { color: GRID }, horzLines: { color: GRID } },
      rightPriceScale: { borderColor: GRID },
      timeScale: { borderColor: GRID, timeVisible: true, secondsVisible: false, tickMarkFormatter: tickMark },
      localization: { timeFormatter: localTime },
      crosshair: { mode: LWC.CrosshairMode.Normal },
    });
    const view = { chart, node: container, zoomed: null, full: null };
    views.set(key, view);
    // Forget the charts whose node left the page (a tab switch or refresh dropped them).
    for (const [k, v] of views) if (k !== key && !v.node.isConnected) { v.chart.remove(); views.delete(k); }
    container.addEventListener("dblclick", () => { view.zoomed = null; chart.timeScale().fitContent(); });
    const finish = (points) => {
      container.dataset.points = String(points);
      const scale = chart.timeScale();
      if (zoomed) scale.setVisibleLogicalRange(zoomed); else scale.fitContent();
      view.zoomed = zoomed;
      // Track what the user does; the visible range is also on the node, for tests and tools.
      scale.subscribeVisibleLogicalRangeChange((range) => {
        if (!range) return;
        const full = range.from <= 0.5 && range.to >= points - 1.5;
        view.zoomed = full ? null : { from: range.from, to: range.to };
        container.dataset.visibleFrom = range.from.toFixed(1);
        container.dataset.visibleTo = range.to.toFixed(1);
      });
    };
    return { chart, legend, finish };
  }

  function swatch(color, text) {
    const span = document.createElement("span");
    span.style.color = color;
    span.textContent = text;
    return span;
  }

  function setLegend(legend, parts) {
    legend.textContent = "";
    for (const part of parts) legend.appendChild(part);
  }

  // data: {candles: [[t, o, h, l, c, v]...], ma7, ma25 (aligned, null-padded)}; key: a name
  // that stays the same from one refresh to the next.
  function candles(container, data, key) {
    const rows = data.candles || [];
    if (!rows.length) return empty(container);
    const { chart, legend, finish } = timeChart(container, key, 340);
    const prices = rows.flatMap((r) => [r[2], r[3]]);
    const format = priceFormat(prices);
    const series = chart.addSeries(LWC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
      priceFormat: format,
    });
    series.setData(rows.map((r) => ({ time: seconds(r[0]), open: r[1], high: r[2], low: r[3], close: r[4] })));
    const volume = chart.addSeries(LWC.HistogramSeries, {
      priceScaleId: "volume", priceFormat: priceFormat(rows.map((r) => r[5]), true), lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    chart.priceScale("right").applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    volume.setData(rows.map((r) => ({ time: seconds(r[0]), value: r[5], color: (r[4] >= r[1] ? UP : DOWN) + "73" })));
    const averages = [["MA7", data.ma7, COLORS[1]], ["MA25", data.ma25, COLORS[2]]].map(([name, values, color]) => {
      const line = chart.addSeries(LWC.LineSeries, {
        color, lineWidth: 2, priceFormat: format, lastValueVisible: false, priceLineVisible: false, crosshairMarkerVisible: false,
      });
      line.setData(rows.map((r, i) => {
        const v = (values || [])[i];
        return v === null || v === undefined ? { time: seconds(r[0]) } : { time: seconds(r[0]), value: v };
      }));
      return { name, line, color };
    });
    const byTime = new Map(rows.map((r, i) => [seconds(r[0]), i]));
    const show = (i) => {
      const [t, o, hi, lo, c, v] = rows[i];
      const f = precise;
      const parts = [swatch(TEXT, `${localTime(seconds(t))}  `),
        swatch(c >= o ? UP : DOWN, `O ${f(o)}  H ${f(hi)}  L ${f(lo)}  C ${f(c)}  `),
        swatch(TEXT, `Vol ${fmtNum(v)}  `)];
      for (const a of averages) {
        const value = ((a.name === "MA7" ? data.ma7 : data.ma25) || [])[i];
        parts.push(swatch(a.color, `${a.name} ${f(value)}  `));
      }
      setLegend(legend, parts);
    };
    show(rows.length - 1);
    chart.subscribeCrosshairMove((param) => {
      const i = param.time === undefined ? undefined : byTime.get(param.time);
      show(i === undefined ? rows.length - 1 : i);
    });
    finish(rows.length);
  }

  // series: [{name, points: [[t_ms, v]...], color?, dash?}]; key as for `candles`.
  function lines(container, series, opts, key) {
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && isFinite(p[1])));
    if (!all.length) return empty(container);
    const { chart, legend, finish } = timeChart(container, key, (opts && opts.height) || 280);
    const format = priceFormat(all.map((p) => p[1]), opts && opts.compact);
    const times = new Set();
    const drawn = series.map((s, i) => {
      const color = s.color || COLORS[i % COLORS.length];
      const line = chart.addSeries(LWC.LineSeries, {
        color, lineWidth: s.width || 2, lineStyle: s.dash ? LWC.LineStyle.Dashed : LWC.LineStyle.Solid,
        priceFormat: format, lastValueVisible: false, priceLineVisible: false, title: "",
      });
      // One point per second (the chart's time unit), the last of each; gaps stay gaps.
      const bySecond = new Map();
      for (const [t, v] of s.points) bySecond.set(seconds(t), v);
      const points = [...bySecond].sort((a, b) => a[0] - b[0]);
      for (const [t] of points) times.add(t);
      line.setData(points.map(([t, v]) => (v === null || !isFinite(v) ? { time: t } : { time: t, value: v })));
      return { name: s.name, color, values: new Map(points) };
    });
    const show = (time) => {
      setLegend(legend, [swatch(TEXT, time === undefined ? "" : `${localTime(time)}  `)].concat(drawn.map((d) => {
        const v = time === undefined ? undefined : d.values.get(time);
        return swatch(d.color, `━ ${d.name}${v === undefined || v === null ? "" : " " + precise(v)}  `);
      })));
    };
    show(undefined);
    chart.subscribeCrosshairMove((param) => show(param.time));
    finish(times.size);
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

  return { candles, lines, bars, empty, fmtNum, priceFormat, COLORS };
})();
