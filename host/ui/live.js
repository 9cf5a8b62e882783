// Live deliveries: every outcome as it arrives on the shared stream,
// filtered here by handler, type, tenant and outcome (the daemon already
// left out what the token may not see), newest first, pausable. A click
// opens the event with every attempt.

import { h, fmtTime, fmtUs, fmtNum, outcomeBadge, table, OUTCOMES } from "./dom.js";
import { openEvent } from "./event.js";

/** Rows on screen. */
const MAX_ROWS = 100;
/** Notices kept (at least) for the filters to choose from. */
const KEPT = 2000;
/** Shortest pause between two renders: at 2k deliveries/s one frame per
 * notice would be wasted work; 10 renders a second still looks live. */
const RENDER_EVERY_MS = 100;
/** Lag samples kept for the percentile shown. */
const LAG_SAMPLES = 4096;

/** The daemon's event-type patterns: exact, `prefix.*`, or `*`. */
export function patternMatches(pattern, type) {
  if (pattern === "*") return true;
  if (pattern.endsWith(".*")) return type.startsWith(pattern.slice(0, -1));
  return pattern === type;
}

export function mount(root, ctx) {
  const input = (id, placeholder) => h("input", { type: "text", id, placeholder, list: id === "f-handler" ? "seen-handlers" : null });
  const f = {
    handler: input("f-handler", "handler"),
    type: input("f-type", "type (message, reaction.*)"),
    tenant: input("f-tenant", "tenant"),
    outcome: h("select", { id: "f-outcome" }, h("option", { value: "" }, "any outcome"),
      h("option", { value: "!ok" }, "failed"), OUTCOMES.map((o) => h("option", { value: o }, o))),
  };
  const seen = h("datalist", { id: "seen-handlers" });
  const seenNames = new Set();
  const pause = h("button", { type: "button", id: "live-pause" }, "Pause");
  const stats = h("div", { class: "status-line", id: "live-stats" });
  const state = h("span", { class: "badge", id: "stream-state" });
  const { table: grid, tbody } = table(["Time", "Handler", "Event type", "Tenant", "Outcome",
    "Attempt", "Duration", "Fuel", "Error"], "grid live");
  grid.id = "live-table";
  const detail = h("section", { class: "card detail", id: "event-detail", hidden: true });
  root.append(h("div", { class: "toolbar" }, f.handler, f.type, f.tenant, f.outcome, pause, state),
    seen, stats, grid, detail);

  let rows = []; // the latest notices, newest last
  let paused = false;
  let timer = null;
  const counts = { received: 0, matched: 0, rendered: 0 };
  const lags = []; // ms from outcome to on screen
  let lagMax = 0;

  function wanted(n) {
    const v = (el) => el.value.trim();
    const o = f.outcome.value;
    return (!v(f.handler) || n.handler === v(f.handler)) &&
      (!v(f.type) || patternMatches(v(f.type), n.event_type)) &&
      (!v(f.tenant) || n.tenant === v(f.tenant)) &&
      (!o || (o === "!ok" ? n.outcome !== "ok" : n.outcome === o));
  }

  const off = ctx.stream.on((n) => {
    counts.received += 1;
    if (!seenNames.has(n.handler) && seenNames.size < 2000) {
      seenNames.add(n.handler);
      seen.append(h("option", { value: n.handler }));
    }
    if (wanted(n)) counts.matched += 1;
    // Kept whether or not it matches: changing a filter shows what arrived.
    rows.push(n);
    if (rows.length > 2 * KEPT) rows = rows.slice(-KEPT);
    if (wanted(n)) schedule();
  });
  const offState = ctx.stream.onState((s, detailText) => {
    state.textContent = s;
    state.className = `badge ${s === "live" ? "good" : "bad"}`;
    state.title = detailText || "";
  });

  function schedule() {
    if (!paused && !timer) timer = setTimeout(render, RENDER_EVERY_MS);
  }

  function row(n) {
    return h("tr", { class: n.outcome === "ok" ? "" : "failed", dataset: { event: n.event_id, handler: n.handler },
      onclick: () => openEvent(detail, n.event_id, ctx) },
    h("td", { class: "mono small" }, fmtTime(n.time_ms)),
    h("td", null, n.handler, n.version ? h("span", { class: "muted" }, ` v${n.version}`) : null),
    h("td", null, n.event_type),
    h("td", null, n.tenant),
    h("td", null, outcomeBadge(n.outcome)),
    h("td", null, `${n.attempt}${n.final_attempt ? "" : " (retry due)"}`),
    h("td", null, fmtUs(n.duration_us)),
    h("td", null, fmtNum(n.fuel)),
    h("td", { class: "error-text" }, n.error ? n.error.slice(0, 300) : ""));
  }

  function render() {
    timer = null;
    if (paused) return;
    const frag = document.createDocumentFragment();
    const now = Date.now();
    let shown = 0;
    for (let i = rows.length - 1; i >= 0 && shown < MAX_ROWS; i -= 1) {
      const n = rows[i];
      if (!wanted(n)) continue;
      shown += 1;
      if (!n.shown) {
        n.shown = true;
        counts.rendered += 1;
        const lag = now - n.time_ms;
        lagMax = Math.max(lagMax, lag);
        lags.push(lag);
        if (lags.length > LAG_SAMPLES) lags.splice(0, lags.length - LAG_SAMPLES);
      }
      frag.append(row(n));
    }
    tbody.replaceChildren(frag);
    showStats();
  }

  function lagP99() {
    if (!lags.length) return 0;
    const sorted = [...lags].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)];
  }

  function showStats() {
    const p99 = lagP99();
    Object.assign(stats.dataset, {
      received: counts.received, matched: counts.matched, rendered: counts.rendered,
      lagged: ctx.stream.lagged, lagP99: p99, lagMax,
    });
    stats.textContent = `${fmtNum(counts.received)} received · ${fmtNum(counts.matched)} matched · ` +
      `${ctx.stream.lagged} missed by the stream · outcome to screen p99 ${p99} ms` +
      (paused ? " · paused" : "");
  }

  function refilter() {
    tbody.replaceChildren();
    schedule();
  }
  for (const el of Object.values(f)) el.addEventListener("input", refilter);

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.classList.toggle("active", paused);
    showStats();
    if (!paused) schedule();
  });
  const statsTimer = setInterval(showStats, 1000);
  showStats();

  return () => { off(); offState(); clearInterval(statsTimer); if (timer) clearTimeout(timer); };
}
