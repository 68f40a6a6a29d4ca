// The dashboard: reads the API every few seconds and redraws the page in
// place. Each panel shows its own request errors; refresh() never throws.
// The summary panel follows GET /api/metrics/stream (Server-Sent Events)
// while the stream delivers, and is polled with the rest otherwise.
// The state (type, period, metric) lives in the query string, so a view can
// be linked: /dashboard?type=cpu_usage&period=daily&metric=avg.
"use strict";

const REFRESH_MS = 5000;
// Counts over all time (windows may be of any length).
const topTypesPath = () => `/api/stats/top-types?from=1970-01-01T00:00:00Z&limit=100`;
// The chart's step per period; trailing periods chart the summary's own window.
const PERIODS = {
  hourly: { step: "1m", seconds: 3600 },
  daily: { step: "15m", seconds: 86400 },
  weekly: { step: "2h", seconds: 7 * 86400 },
  monthly: { step: "12h", seconds: 30 * 86400 },
  all: { step: "1d", seconds: 90 * 86400 }, // all time: the last 90 days
};
const SUMMARY_FIELDS = ["count", "sum", "average_value", "min_value", "max_value", "latest_value", "p50", "p95", "p99", "unique_users"];
const SVG = "http://www.w3.org/2000/svg";

const query = new URLSearchParams(location.search);
const state = {
  type: query.get("type"),
  period: Object.hasOwn(PERIODS, query.get("period")) ? query.get("period") : "hourly",
  metric: query.get("metric") === "avg" ? "avg" : "count",
  series: null, // the last series drawn, redrawn when the metric changes
  timer: 0,
  running: false,
  again: false,
  refreshes: 0,
};

const byId = (id) => document.getElementById(id);
const field = (name) => document.querySelector(`[data-field="${name}"]`);

/** Shows `text` in a data-field element; `value`, when given, goes to its data-value. */
function setField(name, text, value) {
  const el = field(name);
  el.textContent = text;
  if (value === undefined || value === null) delete el.dataset.value;
  else el.dataset.value = String(value);
}

/** A badge's colour follows its data-status (see the stylesheet). */
function setBadge(name, status) {
  setField(name, status || "–");
  field(name).dataset.status = status || "";
}

function showError(panel, message) {
  const el = document.querySelector(`[data-error="${panel}"]`);
  el.textContent = message || "";
  el.hidden = !message;
}

const numberFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const formatNumber = (v) => (typeof v === "number" && Number.isFinite(v) ? numberFormat.format(v) : "–");

/** `2026-12-01 07:48:26 UTC` (or `–`). */
function formatTime(iso) {
  const ms = Date.parse(iso);
  return iso && Number.isFinite(ms) ? new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC" : "–";
}

/** RFC 3339 in whole seconds, as the API writes it. */
const isoSeconds = (ms) => new Date(ms).toISOString().slice(0, 19) + "Z";

/** The read key the page sends (with `auth = "required"`), kept in this browser only. */
const KEY_STORAGE = "analytics-read-key";
let readKey = "";
try {
  readKey = localStorage.getItem(KEY_STORAGE) || "";
} catch (e) {
  // No storage (private mode): the key lives as long as the page.
}

/** GET `url` as JSON. Never throws: `{ok, status, body, headers, error}`. */
async function getJson(url) {
  let response;
  const headers = { accept: "application/json" };
  if (readKey) headers["x-api-key"] = readKey;
  try {
    response = await fetch(url, { cache: "no-store", headers });
  } catch (e) {
    return { ok: false, status: 0, body: null, headers: null, error: `${url}: no answer (${e.message})` };
  }
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  let error = null;
  if (response.status === 401 || response.status === 403) {
    // The API asks for a key: the key field says so.
    document.body.dataset.auth = "needed";
    error = `${url}: needs a key with the read scope — paste one in the key field above (${body && body.message ? body.message : `HTTP ${response.status}`})`;
  } else if (!response.ok) error = `${url}: HTTP ${response.status}${body && body.message ? ` — ${body.message}` : ""}`;
  else if (body === null || typeof body !== "object") error = `${url}: the answer is not JSON`;
  return { ok: error === null, status: response.status, body, headers: response.headers, error };
}

// ---- panels ----

function renderTypes(result) {
  showError("types", result.error);
  if (!result.ok) return;
  const list = byId("types");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.type : undefined;
  const types = Array.isArray(result.body.types) ? result.body.types : [];
  list.replaceChildren(
    ...types.map((t) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.type = t.type;
      button.dataset.count = String(t.count);
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = t.type;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = formatNumber(t.count);
      button.append(name, count);
      button.setAttribute("aria-label", `${t.type}: ${t.count} metrics`);
      item.append(button);
      return item;
    }),
  );
  if (types.length === 0) {
    const item = document.createElement("li");
    item.className = "muted";
    item.textContent = "No metrics yet.";
    list.append(item);
  }
  markChosen();
  if (focused) {
    const again = list.querySelector(`[data-type="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function markChosen() {
  for (const button of byId("types").querySelectorAll("button[data-type]")) {
    button.setAttribute("aria-pressed", String(button.dataset.type === state.type));
  }
  setField("type", state.type || "–");
}

function renderSummary(result) {
  showError("summary", result.error);
  const s = result.ok ? result.body : null;
  for (const name of SUMMARY_FIELDS) setField(name, s ? formatNumber(s[name]) : "–", s ? s[name] : undefined);
  setField("window", s ? (s.from ? `${formatTime(s.from)} – ${formatTime(s.to)}` : "all time") : "–");
  setField("latest_timestamp", s ? formatTime(s.latest_timestamp) : "–", s ? s.latest_timestamp : undefined);
  setBadge("x-cache", result.cache || (result.headers ? result.headers.get("x-cache") || "none" : ""));
  const external = s && s.external_data ? s.external_data : null;
  setField("external", external ? external.status + (external.reason ? ` (${external.reason})` : "") : "–");
}

function renderHealth(result) {
  // /health answers 503 with a JSON body when degraded: that is an answer to show, not an error.
  const h = result.body && typeof result.body === "object" ? result.body : null;
  showError("health", h ? null : result.error);
  setBadge("health-status", h ? h.status : "");
  setField("health-http", result.status ? String(result.status) : "–", result.status || undefined);
  setField("health-key_value", h && h.key_value ? h.key_value : "–");
  setField("health-redis", h && h.redis ? h.redis : "–");
}

function renderBreaker(result) {
  showError("breaker", result.error);
  const b = result.ok ? result.body : null;
  setBadge("breaker-state", b ? b.state : "");
  for (const name of ["failure_count", "failure_threshold", "success_count"]) {
    setField(`breaker-${name}`, b ? formatNumber(b[name]) : "–", b ? b[name] : undefined);
  }
  setField("breaker-opened_at", b ? (b.opened_at ? formatTime(b.opened_at) : "never") : "–");
  setField("breaker-next_attempt_at", b ? (b.next_attempt_at ? formatTime(b.next_attempt_at) : "none") : "–");
}

// ---- chart ----

function svg(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, String(value));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Round tick values covering [lo, hi], about `count` of them. */
function ticks(lo, hi, count) {
  if (hi <= lo) hi = lo + 1;
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * magnitude).find((s) => s >= raw);
  const values = [];
  for (let v = Math.floor(lo / step) * step; v < hi + step / 2; v += step) values.push(Number(v.toPrecision(12)));
  return values;
}

/** A time label: minutes for short periods, days for long ones (UTC). */
function timeLabel(ms) {
  const iso = new Date(ms).toISOString();
  return state.period === "hourly" || state.period === "daily" ? iso.slice(11, 16) : iso.slice(5, 10) + (state.period === "weekly" ? " " + iso.slice(11, 13) + "h" : "");
}

function drawChart() {
  const chart = byId("chart");
  const desc = byId("chart-desc");
  chart.replaceChildren(desc);
  const series = state.series;
  const points = series ? series.points : [];
  chart.dataset.points = String(points.length);
  chart.dataset.metric = state.metric;
  for (const key of ["type", "from", "to", "step"]) {
    if (series) chart.dataset[key] = series[key];
    else delete chart.dataset[key];
  }
  if (points.length === 0) {
    desc.textContent = "No data.";
    chart.append(svg("text", { x: 400, y: 140, "text-anchor": "middle", class: "empty-note" }, "No data"));
    return;
  }

  const [W, H] = [800, 280];
  const m = { left: 64, right: 16, top: 14, bottom: 46 };
  const stepMs = series.step_seconds * 1000;
  const t0 = Date.parse(points[0].start);
  const t1 = Date.parse(points[points.length - 1].start) + stepMs;
  const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (W - m.left - m.right);
  const isCount = state.metric === "count";
  const value = (p) => (isCount ? p.count : p.avg);
  const drawn = points.filter((p) => isCount || p.count > 0).map(value);
  const yTicks = ticks(Math.min(0, ...drawn), Math.max(0, ...drawn), 5);
  const [lo, hi] = [yTicks[0], yTicks[yTicks.length - 1]];
  const y = (v) => m.top + ((hi - v) / (hi - lo)) * (H - m.top - m.bottom);

  // Grid, y labels and axes.
  const axes = svg("g", { class: "axes" });
  for (const v of yTicks) {
    axes.append(svg("line", { x1: m.left, x2: W - m.right, y1: y(v), y2: y(v), class: v === 0 ? "zero" : "grid" }));
    axes.append(svg("text", { x: m.left - 6, y: y(v) + 4, "text-anchor": "end" }, formatNumber(v)));
  }
  axes.append(svg("line", { x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom, class: "axis" }));
  const every = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((p, i) => {
    if (i % every !== 0) return;
    const tx = x(Date.parse(p.start));
    axes.append(svg("line", { x1: tx, x2: tx, y1: H - m.bottom, y2: H - m.bottom + 4, class: "axis" }));
    axes.append(svg("text", { x: tx, y: H - m.bottom + 16, "text-anchor": "middle" }, timeLabel(Date.parse(p.start))));
  });
  const unit = isCount ? `metrics per ${series.step}` : `average value per ${series.step}`;
  axes.append(svg("text", { x: (m.left + W - m.right) / 2, y: H - 6, "text-anchor": "middle", class: "title" }, "time (UTC)"));
  axes.append(svg("text", { x: 14, y: (m.top + H - m.bottom) / 2, "text-anchor": "middle", class: "title", transform: `rotate(-90 14 ${(m.top + H - m.bottom) / 2})` }, unit));
  chart.append(axes);

  // One element per point, carrying its numbers.
  const marks = svg("g", { class: isCount ? "bars" : "dots" });
  const slot = x(t0 + stepMs) - x(t0);
  if (!isCount) {
    let d = "";
    let open = false;
    for (const p of points) {
      if (p.count === 0) {
        open = false;
        continue;
      }
      const px = x(Date.parse(p.start)) + slot / 2;
      d += `${open ? "L" : "M"}${px.toFixed(1)},${y(p.avg).toFixed(1)}`;
      open = true;
    }
    if (d) marks.append(svg("path", { d, class: "line" }));
  }
  for (const p of points) {
    const left = x(Date.parse(p.start));
    const attributes = { "data-start": p.start, "data-count": p.count, "data-avg": p.avg, "data-value": value(p) };
    let mark;
    if (isCount) {
      const gap = slot > 4 ? 1 : 0;
      mark = svg("rect", { ...attributes, x: left + gap, width: Math.max(slot - 2 * gap, 0.5), y: y(p.count), height: y(0) - y(p.count) });
    } else {
      const empty = p.count === 0;
      mark = svg("circle", { ...attributes, cx: left + slot / 2, cy: y(empty ? 0 : p.avg), r: empty ? 1.5 : 3, class: empty ? "empty" : "" });
    }
    mark.append(svg("title", {}, `${formatTime(p.start)}: ${p.count} metrics, average ${formatNumber(p.avg)}`));
    marks.append(mark);
  }
  chart.append(marks);
  const highest = drawn.length ? formatNumber(Math.max(...drawn)) : "–";
  desc.textContent = `${points.length} points, ${unit}, from ${formatTime(points[0].start)}; highest ${highest}.`;
}

// ---- the live summary ----

// The summary arrives by EventSource as soon as it changes. Polled instead
// (every REFRESH_MS, with the rest) while the stream is not delivering: no
// EventSource, a read key (EventSource sends no headers), auto-refresh off,
// the connection down and not back yet, or an error answer (then for as
// long as the view stays the same).
const live = { source: null, view: "", summary: null, connected: false, failed: "", events: 0 };

function followLive() {
  const view = `${state.type}/${state.period}`;
  const wanted = Boolean(state.type) && byId("auto-refresh").checked && !readKey && typeof EventSource === "function" && live.failed !== view;
  if (live.source && (!wanted || live.view !== view)) {
    live.source.close();
    live.source = null;
  }
  if (!wanted || live.source) return;
  const source = new EventSource(`/api/metrics/stream?type=${encodeURIComponent(state.type)}&period=${state.period}`);
  Object.assign(live, { source, view, summary: null, connected: false });
  // The stream ends every minute and the browser reconnects with the last
  // event's id: a summary still current is not sent again, so the one held stays.
  source.onopen = () => {
    if (live.source === source) live.connected = true;
  };
  source.onmessage = (event) => {
    if (live.source !== source) return;
    let body;
    try {
      body = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    Object.assign(live, { summary: body, connected: true });
    live.events += 1;
    document.body.dataset.liveEvents = String(live.events);
    document.body.dataset.summarySource = "stream";
    renderSummary(streamed());
  };
  source.onerror = () => {
    if (live.source !== source) return;
    live.connected = false;
    if (source.readyState === EventSource.CLOSED) {
      // An error answer, not a dropped connection: the browser gives up, so do we.
      source.close();
      Object.assign(live, { source: null, summary: null, failed: view });
    }
  };
}

/** The last streamed summary, as getJson would have answered it. */
const streamed = () => ({ ok: true, status: 200, body: live.summary, headers: null, error: null, cache: "stream" });

// ---- refreshing ----

/** The series window: the summary's, or (all time, or no summary) the period before now. */
function seriesRange(summary) {
  if (summary && summary.from && summary.to) return { from: summary.from, to: summary.to };
  const now = Date.now();
  return { from: isoSeconds(now - PERIODS[state.period].seconds * 1000), to: isoSeconds(now + 1000) };
}

async function refreshOnce() {
  const [types, health, breaker] = await Promise.all([getJson(topTypesPath()), getJson("/health"), getJson("/api/circuit-breaker/status")]);
  renderTypes(types);
  renderHealth(health);
  renderBreaker(breaker);
  if (!state.type && types.ok && Array.isArray(types.body.types) && types.body.types.length > 0) {
    state.type = types.body.types[0].type;
    markChosen();
    saveView();
  }
  const want = `${state.type}/${state.period}`;
  const stale = () => `${state.type}/${state.period}` !== want; // a click changed the view: the next refresh draws it
  if (!state.type) {
    state.series = null;
    drawChart();
    return;
  }
  const type = encodeURIComponent(state.type);
  followLive();
  const fromStream = live.source && live.connected && live.summary && live.view === want;
  const summary = fromStream ? streamed() : await getJson(`/api/metrics/summary?type=${type}&period=${state.period}`);
  if (stale()) return;
  document.body.dataset.summarySource = fromStream ? "stream" : "polling";
  renderSummary(summary);
  const { from, to } = seriesRange(summary.ok ? summary.body : null);
  const step = PERIODS[state.period].step;
  const series = await getJson(`/api/metrics/series?type=${type}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}&step=${step}`);
  if (stale()) return;
  showError("series", series.error);
  state.series = series.ok && Array.isArray(series.body.points) ? { ...series.body, type: state.type, from, to, step } : null;
  drawChart();
}

async function refresh() {
  if (state.running) {
    state.again = true;
    return;
  }
  state.running = true;
  clearTimeout(state.timer);
  try {
    await refreshOnce();
    const now = new Date();
    const shown = byId("refreshed");
    shown.dateTime = now.toISOString();
    shown.textContent = now.toISOString().slice(11, 19) + " UTC";
    state.refreshes += 1;
    document.body.dataset.refreshes = String(state.refreshes);
    document.body.dataset.state = "ready";
  } catch (e) {
    // A bug, not a failed request (those are shown per panel): show it, keep refreshing.
    console.error("refresh failed:", e && e.stack ? e.stack : e);
  } finally {
    state.running = false;
    if (state.again) {
      state.again = false;
      refresh();
    } else {
      schedule();
    }
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (byId("auto-refresh").checked) state.timer = setTimeout(refresh, REFRESH_MS);
}

function saveView() {
  const view = new URLSearchParams({ period: state.period, metric: state.metric });
  if (state.type) view.set("type", state.type);
  history.replaceState(null, "", `?${view}`);
}

// ---- controls ----

byId("types").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-type]");
  if (!button || button.dataset.type === state.type) return;
  state.type = button.dataset.type;
  state.series = null;
  markChosen();
  saveView();
  refresh();
});
byId("period").value = state.period;
byId("period").addEventListener("change", (event) => {
  state.period = event.target.value;
  saveView();
  refresh();
});
for (const radio of document.querySelectorAll('input[name="metric"]')) {
  radio.checked = radio.value === state.metric;
  radio.addEventListener("change", () => {
    state.metric = radio.value;
    saveView();
    drawChart();
  });
}
byId("auto-refresh").addEventListener("change", () => {
  followLive();
  schedule();
});
byId("api-key").value = readKey;
byId("api-key").addEventListener("change", (event) => {
  readKey = event.target.value.trim();
  try {
    localStorage.setItem(KEY_STORAGE, readKey);
  } catch (e) {
    // No storage: the key is used for this page only.
  }
  delete document.body.dataset.auth;
  refresh();
});
byId("refresh-now").addEventListener("click", () => refresh());
markChosen();
refresh();
