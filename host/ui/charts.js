// Throughput (deliveries/s by outcome) and latency (p50, p99) over the last
// hour or five minutes, from `GET /v1/series`: the daemon keeps one-second
// buckets in memory for an hour. Drawn on canvases; refreshed while shown.

import { api, query } from "./api.js";
import { h, notice, errorText, fmtUs, fmtNum, OUTCOMES } from "./dom.js";

/** Range choices: seconds shown and seconds per point. */
const RANGES = [
  { seconds: 3600, step: 10, label: "Last hour" },
  { seconds: 300, step: 1, label: "Last 5 minutes" },
];
const REFRESH_MS = 5000;
const COLORS = {
  ok: "#2e7d32", handler_error: "#c62828", out_of_fuel: "#ef6c00", timeout: "#6a1b9a",
  memory_limit: "#ad1457", table_limit: "#4e342e", stack_overflow: "#283593", trap: "#d84315",
  log_limit: "#00838f", emit_limit: "#558b2f", kv_limit: "#5d4037", result_limit: "#37474f",
  host_error: "#000000",
};

export function mount(root) {
  const range = h("select", { id: "chart-range" },
    RANGES.map((r, i) => h("option", { value: String(i) }, r.label)));
  const status = h("div", { class: "status-line" });
  const throughput = h("canvas", { id: "chart-throughput", width: 900, height: 260 });
  const latency = h("canvas", { id: "chart-latency", width: 900, height: 220 });
  const legend = h("div", { class: "legend", id: "chart-legend" });
  const summary = h("div", { class: "status-line", id: "chart-summary" });
  root.append(h("div", { class: "toolbar" }, range), status,
    h("section", { class: "card chart" }, h("h2", null, "Deliveries per second, by outcome"), throughput, legend),
    h("section", { class: "card chart" }, h("h2", null, "Latency (p50, p99)"), latency), summary);

  async function load() {
    const r = RANGES[Number(range.value)] || RANGES[0];
    try {
      const w = await api("GET", `/v1/series${query({ seconds: r.seconds, step: r.step })}`);
      status.replaceChildren();
      draw(w);
      root.dataset.loaded = String(Date.now());
    } catch (e) {
      status.replaceChildren(notice("error", errorText(e)));
    }
  }

  function draw(w) {
    const present = OUTCOMES.filter((o) => w.points.some((p) => p.deliveries[o]));
    const perSec = w.points.map((p) => {
      const out = {};
      for (const o of present) out[o] = (p.deliveries[o] || 0) / w.step_s;
      return out;
    });
    stacked(throughput, w.points, perSec, present, w.step_s);
    lines(latency, w.points, [["p50_us", "#1565c0"], ["p99_us", "#c62828"]]);
    const totals = {};
    for (const p of w.points) for (const [o, n] of Object.entries(p.deliveries)) totals[o] = (totals[o] || 0) + n;
    legend.replaceChildren(...(present.length ? present : ["ok"]).map((o) =>
      h("span", { class: "key" }, h("span", { class: `swatch outcome-${o}` }), ` ${o} ${fmtNum(totals[o] || 0)}`)));
    const all = Object.values(totals).reduce((a, b) => a + b, 0);
    const last = w.points.slice(-6, -1);
    const recent = last.reduce((a, p) => a + Object.values(p.deliveries).reduce((x, y) => x + y, 0), 0) /
      Math.max(1, last.length * w.step_s);
    summary.textContent = `${fmtNum(all)} deliveries in the range · ${fmtNum(recent)}/s lately`;
    summary.dataset.total = String(all);
  }

  range.addEventListener("change", load);
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

/** Prepares a canvas for crisp drawing; returns its 2D context and size. */
function surface(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.height / (canvas.dataset.ratio ? Number(canvas.dataset.ratio) : 1);
  canvas.dataset.ratio = String(ratio);
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  return { g, width, height };
}

const PAD = { left: 56, right: 12, top: 10, bottom: 22 };

function axes(g, width, height, points, max, label) {
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  g.strokeStyle = "#ccc";
  g.fillStyle = "#555";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const y = PAD.top + plotH - (plotH * i) / 4;
    g.beginPath(); g.moveTo(PAD.left, y); g.lineTo(width - PAD.right, y); g.stroke();
    g.fillText(label((max * i) / 4), 4, y + 4);
  }
  const n = points.length;
  for (let i = 0; i < n; i += Math.max(1, Math.floor(n / 6))) {
    const x = PAD.left + (plotW * i) / Math.max(1, n - 1);
    const d = new Date(points[i].time_ms);
    g.fillText(`${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}:${String(d.getSeconds()).padStart(2, "0")}`, x - 20, height - 6);
  }
  return { plotW, plotH };
}

function stacked(canvas, points, perSec, outcomes, step) {
  const { g, width, height } = surface(canvas);
  const sums = perSec.map((p) => Object.values(p).reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...sums) * 1.1;
  const { plotW, plotH } = axes(g, width, height, points, max, (v) => fmtNum(v));
  const n = points.length;
  const x = (i) => PAD.left + (plotW * i) / Math.max(1, n - 1);
  const y = (v) => PAD.top + plotH - (plotH * v) / max;
  const base = new Array(n).fill(0);
  for (const o of outcomes) {
    g.fillStyle = COLORS[o] || "#888";
    g.beginPath();
    g.moveTo(x(0), y(base[0]));
    const top = perSec.map((p, i) => base[i] + (p[o] || 0));
    for (let i = 0; i < n; i += 1) g.lineTo(x(i), y(top[i]));
    for (let i = n - 1; i >= 0; i -= 1) g.lineTo(x(i), y(base[i]));
    g.closePath();
    g.fill();
    for (let i = 0; i < n; i += 1) base[i] = top[i];
  }
  canvas.dataset.max = String(Math.max(0, ...sums));
  canvas.dataset.step = String(step);
}

function lines(canvas, points, series) {
  const { g, width, height } = surface(canvas);
  const max = Math.max(1, ...points.flatMap((p) => series.map(([k]) => p[k]))) * 1.1;
  const { plotW, plotH } = axes(g, width, height, points, max, (v) => fmtUs(Math.round(v)));
  const n = points.length;
  for (const [k, color] of series) {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    let drawing = false;
    points.forEach((p, i) => {
      const xx = PAD.left + (plotW * i) / Math.max(1, n - 1);
      const yy = PAD.top + plotH - (plotH * p[k]) / max;
      if (!p[k]) { drawing = false; return; } // no deliveries: no latency
      if (drawing) g.lineTo(xx, yy); else g.moveTo(xx, yy);
      drawing = true;
    });
    g.stroke();
    // A dot per point, so a lone second with deliveries shows too.
    g.fillStyle = color;
    points.forEach((p, i) => {
      if (!p[k]) return;
      g.fillRect(PAD.left + (plotW * i) / Math.max(1, n - 1) - 1.5, PAD.top + plotH - (plotH * p[k]) / max - 1.5, 3, 3);
    });
    g.fillStyle = color;
    g.fillText(k.replace("_us", ""), width - PAD.right - 40, PAD.top + 12 + series.findIndex(([s]) => s === k) * 12);
  }
  canvas.dataset.max = String(Math.max(0, ...points.map((p) => p.p99_us)));
}
