// Sluice dashboard page: sidebar state, tabs, API calls and live updates (SSE).
// Part of sluice-dashboard (Apache-2.0).
"use strict";

const state = {
  symbols: [],
  selected: [],
  period: "24h",
  limit: 1000,
  tab: "overview",
  detail: null,
  status: null,
  renders: 0,
  seq: 0,
  // Whether the event stream said hello, and how many tab refreshes are under way (a page is
  // quiet when the stream is up, no refresh is pending and none runs).
  streaming: false,
  inflight: 0,
};
window.__sluice = state;

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
  return node;
}

function fmtPrice(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  const a = Math.abs(v);
  const digits = a >= 1000 ? 2 : a >= 1 ? 4 : 6;
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
function fmtPct(v) { return v === null || v === undefined || !isFinite(v) ? "–" : (v > 0 ? "+" : "") + v.toFixed(2) + " %"; }
function fmtSigned(v) { return v === null || v === undefined || !isFinite(v) ? "–" : (v > 0 ? "+" : "") + fmtPrice(v); }
function fmtVol(v) { return Charts.fmtNum(v); }
function fmtVolat(v) { return v === null || v === undefined || !isFinite(v) ? "–" : (v * 100).toFixed(3) + " %"; }
function fmtTime(ms) { return ms === null || ms === undefined ? "–" : new Date(ms).toLocaleString(); }
function cls(v) { return v > 0 ? "up" : v < 0 ? "down" : ""; }

function query(extra) {
  const p = new URLSearchParams();
  if (state.selected.length) p.set("symbols", state.selected.join(","));
  p.set("period", state.period);
  p.set("limit", String(state.limit));
  for (const [k, v] of Object.entries(extra || {})) p.set(k, v);
  return p.toString();
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = (body && body.error) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

// ---- sidebar -------------------------------------------------------------------------------

function renderSidebar() {
  const chips = $("chips");
  chips.textContent = "";
  for (const s of state.selected) {
    chips.appendChild(h("button", { type: "button", class: "chip", "data-symbol": s, title: "Remove " + s, onclick: () => {
      state.selected = state.selected.filter((x) => x !== s);
      changed();
    } }, s));
  }
  const add = $("add-symbol");
  add.textContent = "";
  add.appendChild(h("option", { value: "" }, state.symbols.length ? "Add a symbol…" : "No symbol yet"));
  for (const s of state.symbols) if (!state.selected.includes(s)) add.appendChild(h("option", { value: s }, s));
  for (const b of document.querySelectorAll("#periods button")) b.classList.toggle("active", b.dataset.period === state.period);
  $("limit").value = String(state.limit);
}

function changed() {
  renderSidebar();
  saveSettings();
  refresh();
}

function saveSettings() {
  try {
    localStorage.setItem("sluice-dashboard", JSON.stringify({ selected: state.selected, period: state.period, limit: state.limit, tab: state.tab }));
  } catch (_) { /* private mode */ }
}

function loadSettings() {
  try {
    const s = JSON.parse(localStorage.getItem("sluice-dashboard") || "null");
    if (s) {
      if (Array.isArray(s.selected)) state.selected = s.selected.filter((x) => typeof x === "string");
      if (["1h", "24h", "7d", "30d", "all"].includes(s.period)) state.period = s.period;
      if (Number.isInteger(s.limit) && s.limit >= 1 && s.limit <= 10000) state.limit = s.limit;
      if (typeof s.tab === "string" && $("tab-" + s.tab)) state.tab = s.tab;
      return true;
    }
  } catch (_) { /* ignore */ }
  return false;
}

function setupSidebar() {
  $("add-symbol").addEventListener("change", (e) => {
    const v = e.target.value;
    if (v && !state.selected.includes(v)) { state.selected.push(v); changed(); }
  });
  for (const b of document.querySelectorAll("#periods button")) {
    b.addEventListener("click", () => { state.period = b.dataset.period; changed(); });
  }
  $("limit").addEventListener("change", (e) => {
    const v = Math.round(Number(e.target.value));
    state.limit = Number.isFinite(v) ? Math.min(10000, Math.max(1, v)) : 1000;
    changed();
  });
  for (const b of document.querySelectorAll("#tabs button")) {
    b.addEventListener("click", () => { state.tab = b.dataset.tab; saveSettings(); showTab(); refresh(); });
  }
}

function showTab() {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === state.tab);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + state.tab;
}

// ---- status and live updates ---------------------------------------------------------------

function renderStatus() {
  const s = state.status;
  const dot = $("live-dot");
  dot.className = "dot " + (s && s.state === "live" ? "live" : "waiting");
  $("live-state").textContent = s ? (s.state === "live" ? "live · " + s.backend : s.state) : "connecting…";
  const last = s && (s.last_commit_ms || s.latest_ms);
  $("last-update").textContent = last ? new Date(last).toLocaleTimeString() : "–";
  if (last) $("last-update").setAttribute("datetime", new Date(last).toISOString());
  $("source-info").textContent = s ? `table ${s.ticker_table}${s.tables.candles ? " · candles " + s.candles_table : ""}` : "";
  const banner = $("banner");
  if (!s || s.state !== "live") {
    banner.hidden = false;
    banner.textContent = s && !s.connected
      ? "Waiting for the database… the page will update by itself."
      : "Waiting for data: no row in the ticker table yet. The page will update by itself.";
  } else {
    banner.hidden = true;
  }
}

async function loadStatus() {
  try {
    state.status = await api("/api/status");
  } catch (e) {
    state.status = { state: "waiting for the database", connected: false, tables: {}, ticker_table: "?" };
  }
  renderStatus();
}

async function loadSymbols() {
  try {
    const body = await api("/api/symbols");
    const first = state.symbols.length === 0;
    state.symbols = body.symbols;
    const known = state.selected.filter((s) => state.symbols.includes(s));
    if (first && known.length === 0) state.selected = body.default.slice();
    else if (known.length) state.selected = known;
  } catch (_) { /* shown by the status banner */ }
  renderSidebar();
}

let pending = null;
function liveRefresh() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    state.inflight += 1;
    try {
      await loadStatus();
      if (state.symbols.length === 0) await loadSymbols();
      await refresh();
    } finally {
      state.inflight -= 1;
    }
  }, 150);
}

function connectEvents() {
  if (!window.EventSource) return;
  const source = new EventSource("/api/events");
  const onEvent = (e) => {
    let live = null;
    try { live = JSON.parse(e.data); } catch (_) { return; }
    if (e.type === "batch" || live.seq !== state.seq) {
      state.seq = live.seq;
      liveRefresh();
    }
  };
  source.addEventListener("hello", (e) => { state.streaming = true; onEvent(e); });
  source.addEventListener("batch", onEvent);
}

// ---- tabs ----------------------------------------------------------------------------------

let generation = 0;
async function refresh() {
  const mine = ++generation;
  const tab = state.tab;
  const target = $("tab-" + tab);
  state.inflight += 1;
  try {
    const render = RENDER[tab];
    const node = await render();
    if (mine !== generation) return; // a newer refresh superseded this one
    target.textContent = "";
    target.appendChild(node);
    drawPending();
    state.renders += 1;
    target.dataset.renders = String(state.renders);
  } catch (e) {
    if (mine !== generation) return;
    target.textContent = "";
    target.appendChild(h("p", { class: "empty" }, e.status ? "Could not load: " + e.message : "Could not reach the server."));
  } finally {
    state.inflight -= 1;
  }
}

// Charts are drawn once their container is in the document (they need its width).
let toDraw = [];
function chart(draw, cssClass) {
  const node = h("div", { class: "chart " + (cssClass || "") });
  toDraw.push(() => draw(node));
  return node;
}
function drawPending() {
  const list = toDraw;
  toDraw = [];
  for (const d of list) d();
}

function periodInfo(body) {
  const info = $("period-info");
  if (!body || body.end_ms === null) { info.textContent = ""; return; }
  const from = body.start_ms === null ? "the first row" : fmtTime(body.start_ms);
  info.textContent = `Period ${body.period.toUpperCase()}: ${from} → ${fmtTime(body.end_ms)} (newest snapshot)`;
}

function table(columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c[0])))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => {
      const v = c[1](r);
      return h("td", { class: c[2] ? cls(c[2](r)) : null }, v);
    }))))));
}

const STAT_COLUMNS = [
  ["Symbol", (s) => s.symbol],
  ["Last close", (s) => fmtPrice(s.last_close)],
  ["Change", (s) => fmtSigned(s.change), (s) => s.change],
  ["% change", (s) => fmtPct(s.pct_change), (s) => s.pct_change],
  ["Mean price", (s) => fmtPrice(s.mean_price)],
  ["Max high", (s) => fmtPrice(s.max_high)],
  ["Min low", (s) => fmtPrice(s.min_low)],
  ["Rel. volatility", (s) => fmtVolat(s.volatility)],
  ["Volume", (s) => fmtVol(s.volume)],
];

function noData(text) { return h("p", { class: "empty" }, text); }

async function renderOverview() {
  const body = await api("/api/overview?" + query());
  periodInfo(body);
  if (!body.stats.length) return noData(state.selected.length ? "No data for the selected symbols in this period." : "Select a symbol.");
  const cards = body.stats.map((s) => h("div", { class: "card metric-card", "data-symbol": s.symbol },
    h("h3", {}, s.symbol),
    h("div", { class: "metric-big", "data-field": "last_close" }, fmtPrice(s.last_close)),
    h("div", { class: "delta " + cls(s.change), "data-field": "pct_change" }, `${fmtSigned(s.change)} (${fmtPct(s.pct_change)})`),
    h("div", { class: "metrics" },
      h("div", {}, h("span", {}, "Mean price"), fmtPrice(s.mean_price)),
      h("div", {}, h("span", {}, "Max high"), fmtPrice(s.max_high)),
      h("div", {}, h("span", {}, "Min low"), fmtPrice(s.min_low)),
      h("div", {}, h("span", {}, "Mean rel. volatility"), fmtVolat(s.volatility)),
      h("div", {}, h("span", {}, "Total volume"), fmtVol(s.volume)),
      h("div", {}, h("span", {}, "Snapshots"), String(s.rows)))));
  return h("div", {}, h("div", { class: "grid" }, cards), h("h2", {}, "Summary"), table(STAT_COLUMNS, body.stats));
}

async function renderCharts() {
  const body = await api("/api/candles?" + query());
  periodInfo(body);
  if (!body.series.length) return noData("Select a symbol.");
  return h("div", {}, h("p", { class: "muted" }, `One-minute candles from ${body.source || "–"}, with MA7 and MA25 of the close.`),
    h("div", { class: "grid charts-grid" }, body.series.map((s) => h("div", { class: "card chart-card", "data-symbol": s.symbol },
      h("h3", {}, `${s.symbol} · ${s.candles.length} candles`),
      chart((n) => Charts.candles(n, s, `candles:${s.symbol}:${state.period}`), "candles")))));
}

async function renderTop() {
  const body = await api("/api/top?" + query());
  periodInfo(body);
  if (!body.by_volume.length) return noData("No data in this period.");
  return h("div", {},
    h("h2", {}, "Top 5 by volume"),
    h("div", { class: "grid" },
      h("div", { class: "card" }, table([STAT_COLUMNS[0], STAT_COLUMNS[8], STAT_COLUMNS[1], STAT_COLUMNS[3]], body.by_volume)),
      h("div", { class: "card" }, chart((n) => Charts.bars(n, body.by_volume.map((s) => ({ label: s.symbol, value: s.volume })), { color: "#4c9be8" })))),
    h("h2", {}, "Top 5 gainers"),
    h("div", { class: "grid" },
      h("div", { class: "card" }, table([STAT_COLUMNS[0], STAT_COLUMNS[1], STAT_COLUMNS[3]], body.gainers)),
      h("div", { class: "card" }, h("h3", {}, "Price index (base 100)"),
        chart((n) => Charts.lines(n, body.gainers_index.map((g) => ({ name: g.symbol, points: g.points })), {}, `gainers:${state.period}`)))),
    h("h2", {}, "Top 5 losers"),
    h("div", { class: "grid" },
      h("div", { class: "card" }, table([STAT_COLUMNS[0], STAT_COLUMNS[1], STAT_COLUMNS[3]], body.losers)),
      h("div", { class: "card" }, h("h3", {}, "% change"),
        chart((n) => Charts.bars(n, body.losers.map((s) => ({ label: s.symbol, value: s.pct_change })), { format: fmtPct })))));
}

async function renderAnomalies() {
  const body = await api("/api/anomalies?" + query());
  periodInfo(body);
  const intro = h("p", { class: "muted" }, `Symbols whose |% change| > ${body.threshold_pct} % and whose mean relative volatility is above the ${Math.round(body.volatility_quantile * 100)}th percentile (${fmtVolat(body.volatility_threshold)}) over the period.`);
  if (!body.anomalies.length) return h("div", {}, intro, noData("No anomaly in this period."));
  return h("div", {}, intro,
    table(STAT_COLUMNS, body.anomalies),
    h("div", { class: "grid", style: "margin-top:16px" },
      h("div", { class: "card" }, h("h3", {}, "% change"),
        chart((n) => Charts.bars(n, body.anomalies.map((s) => ({ label: s.symbol, value: s.pct_change })), { format: fmtPct }))),
      h("div", { class: "card" }, h("h3", {}, "Relative volatility"),
        chart((n) => Charts.bars(n, body.anomalies.map((s) => ({ label: s.symbol, value: s.volatility })), { color: "#ffb347", format: fmtVolat })))));
}

async function renderDetails() {
  const choices = state.selected.length ? state.selected : state.symbols;
  if (!state.detail || !choices.includes(state.detail)) state.detail = choices[0] || null;
  if (!state.detail) return noData("Select a symbol.");
  const body = await api("/api/details?" + query({ symbols: state.detail }));
  periodInfo(body);
  const picker = h("select", { id: "detail-symbol", onchange: (e) => { state.detail = e.target.value; refresh(); } },
    choices.map((s) => h("option", { value: s, selected: s === state.detail }, s)));
  const csv = h("a", { class: "button", id: "csv-download", href: "/api/history.csv?" + query({ symbols: state.detail }), download: `${state.detail}_${state.period}.csv` }, "Download CSV");
  const head = h("div", { class: "row" }, h("div", {}, h("label", { for: "detail-symbol" }, "Symbol"), picker), csv);
  const s = body.summary;
  if (!s) return h("div", {}, head, noData("No data for this symbol in this period."));
  const summary = table(
    [["Symbol", (x) => x.symbol], ["Open", (x) => fmtPrice(x.first_close)], ["Close", (x) => fmtPrice(x.last_close)],
      ["High", (x) => fmtPrice(x.max_high)], ["Low", (x) => fmtPrice(x.min_low)], ["Spread", (x) => fmtPrice(x.spread)],
      ["% change", (x) => fmtPct(x.pct_change), (x) => x.pct_change], ["Volatility", (x) => fmtVolat(x.volatility)],
      ["Volume", (x) => fmtVol(x.volume)]], [s]);
  const rows = body.history.slice().reverse();
  const at = (i) => rows.map((r, k) => [r[0], i === "ma7" ? body.ma7[k] : i === "ma25" ? body.ma25[k] : r[i]]);
  const cols = [["Time", (r) => fmtTime(r[0])]].concat(body.columns.slice(1).map((c, i) => [c.replace("_price", ""), (r) => (c.includes("volume") ? fmtVol(r[i + 1]) : fmtPrice(r[i + 1]))]));
  return h("div", {}, head, h("h2", {}, "Summary"), summary,
    h("div", { class: "grid", style: "margin-top:16px" },
      h("div", { class: "card" }, h("h3", {}, "High / low with MA7 and MA25 of the close"),
        chart((n) => Charts.lines(n, [
          { name: "high", points: at(2), color: "#26a69a" },
          { name: "low", points: at(3), color: "#ef5350" },
          { name: "close", points: at(4), color: "#4c9be8" },
          { name: "MA7", points: at("ma7"), color: "#ffb347", dash: "4 3" },
          { name: "MA25", points: at("ma25"), color: "#b48ef0", dash: "4 3" }], {}, `details-price:${state.detail}:${state.period}`))),
      h("div", { class: "card" }, h("h3", {}, "Volume (24 h rolling)"),
        chart((n) => Charts.lines(n, [{ name: "volume", points: at(5), color: "#4c9be8" }], { compact: true }, `details-volume:${state.detail}:${state.period}`)))),
    h("h2", {}, `History (${body.history.length} rows, newest first)`), table(cols, body.history));
}

const RENDER = { overview: renderOverview, charts: renderCharts, top: renderTop, anomalies: renderAnomalies, details: renderDetails };

// ---- start ---------------------------------------------------------------------------------

async function start() {
  loadSettings();
  setupSidebar();
  showTab();
  renderSidebar();
  await loadStatus();
  await loadSymbols();
  await refresh();
  connectEvents();
  const every = (state.status && state.status.refresh_ms) || 5000;
  // Fallback when the event stream is down, and the "waiting" state.
  setInterval(() => { if (!state.status || state.status.state !== "live") liveRefresh(); }, every);
  // Redraw when the width changed (SVG charts are drawn to it); not for a height change or a
  // passing resize that ends at the same width (a screenshot of the whole page does that).
  let resize = null;
  let width = window.innerWidth;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(() => {
      if (window.innerWidth === width) return;
      width = window.innerWidth;
      refresh();
    }, 250);
  });
}

start();
