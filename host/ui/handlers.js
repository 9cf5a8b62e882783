// Handlers: a table with status, circuit, version, counts, failure rate,
// latency and fuel per delivery, kept current from the live stream; one
// handler's details (enable/disable, config, versions and rollback); and a
// deploy form (admin tokens).

import { api } from "./api.js";
import { append, h, notice, errorText, fmtBytes, fmtUs, fmtNum, fmtTime, pretty, table } from "./dom.js";

/** How often the whole table is read again (percentiles are not in the stream). */
const REFRESH_MS = 15000;

export function mount(root, ctx) {
  const status = h("div", { class: "status-line" });
  const filter = h("input", { type: "search", placeholder: "Filter by name", id: "handler-filter" });
  const count = h("span", { class: "muted", id: "handler-count" });
  // Compiled code in memory against the budget (`[runtime] resident_*`).
  const resident = h("div", { class: "status-line", id: "resident" });
  const { table: grid, tbody } = table(["Name", "Status", "Circuit", "Version", "Processed",
    "Failure rate", "p50", "p99", "Fuel / delivery", "Last outcome"], "grid handlers");
  grid.id = "handlers-table";
  const detail = h("section", { class: "card detail", id: "handler-detail", hidden: true });
  const rows = new Map(); // name -> {tr, cells, h}
  let handlers = [];

  append(root, ctx.admin ? deployForm(() => load()) : null,
    h("div", { class: "toolbar" }, filter, count), resident, status, grid, detail);

  function rate(s) {
    return s && s.processed ? s.failed / s.processed : 0;
  }

  function fill(row, hd) {
    const s = hd.stats || {};
    const c = row.cells;
    c.status.replaceChildren(h("span", { class: `badge ${hd.enabled ? "good" : "bad"}` },
      hd.enabled ? "enabled" : "disabled"));
    if (!hd.enabled && hd.disabled_reason) c.status.title = hd.disabled_reason;
    const circuit = hd.circuit ? hd.circuit.state : "—";
    const held = hd.circuit ? hd.circuit.tenants.length : 0;
    c.circuit.replaceChildren(h("span", { class: `badge ${circuit === "closed" ? "good" : circuit === "—" ? "" : "bad"}` }, circuit));
    // Tenants whose own breaker is open: only their deliveries wait.
    if (held) c.circuit.append(" ", h("span", { class: "badge bad", title: hd.circuit.tenants.map((t) => t.tenant).join(", ") }, `${held} tenant${held === 1 ? "" : "s"} open`));
    c.version.textContent = `v${hd.active_version}`;
    c.processed.textContent = fmtNum(s.processed || 0);
    c.failure.textContent = `${(rate(s) * 100).toFixed(1)}%`;
    c.failure.classList.toggle("bad-text", rate(s) > 0);
    c.p50.textContent = fmtUs(s.latency_p50_us);
    c.p99.textContent = fmtUs(s.latency_p99_us);
    c.fuel.textContent = s.processed ? fmtNum(s.fuel_total / s.processed) : "";
    c.last.textContent = s.last_outcome_ms ? fmtTime(s.last_outcome_ms) : "";
  }

  function render() {
    const started = performance.now();
    const frag = document.createDocumentFragment();
    rows.clear();
    for (const hd of handlers) {
      const cells = {};
      const td = (k) => (cells[k] = h("td", { class: k }));
      const name = h("a", { href: "#/handlers", class: "name",
        onclick: (e) => { e.preventDefault(); open(hd.name); } }, hd.name);
      const tr = h("tr", { dataset: { handler: hd.name } }, h("td", null, name, hd.description
        ? h("div", { class: "muted small" }, hd.description) : null),
      td("status"), td("circuit"), td("version"), td("processed"), td("failure"),
      td("p50"), td("p99"), td("fuel"), td("last"));
      const row = { tr, cells, hd };
      fill(row, hd);
      rows.set(hd.name, row);
      frag.append(tr);
    }
    tbody.replaceChildren(frag);
    applyFilter();
    grid.dataset.renderMs = String(Math.round(performance.now() - started));
  }

  function applyFilter() {
    const f = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const [name, row] of rows) {
      const show = !f || name.toLowerCase().includes(f);
      row.tr.hidden = !show;
      if (show) shown += 1;
    }
    count.textContent = `${shown} of ${rows.size} handlers`;
  }
  filter.addEventListener("input", applyFilter);

  function showResident(r) {
    if (!r) return;
    const load = r.load_mean_us === undefined || r.load_mean_us === null
      ? "" : ` (mean ${fmtUs(r.load_mean_us)})`;
    resident.textContent = `Loaded: ${r.handlers} of ${r.deployed} handlers, ` +
      `${r.modules} modules, ${fmtBytes(r.code_bytes)} of code ` +
      `(budget ${r.budget_modules} modules, ${fmtBytes(r.budget_bytes)}) · ` +
      `${r.loads} loads${load} · ${r.evictions} evictions`;
  }

  async function load() {
    try {
      const [body, stats] = await Promise.all([
        api("GET", "/v1/handlers?stats=true"),
        api("GET", "/v1/stats"),
      ]);
      handlers = body.handlers;
      showResident(stats.resident);
      status.replaceChildren();
      render();
      root.dataset.loaded = String(Date.now());
    } catch (e) {
      status.replaceChildren(notice("error", errorText(e)));
    }
  }

  // Live: count each outcome as it arrives; percentiles come with the refresh.
  const off = ctx.stream.on((n) => {
    const row = rows.get(n.handler);
    if (!row) return;
    const s = row.hd.stats || (row.hd.stats = { processed: 0, failed: 0, fuel_total: 0 });
    s.processed += 1;
    if (n.outcome !== "ok") s.failed += 1;
    s.fuel_total += n.fuel;
    s.last_outcome_ms = n.time_ms;
    pending.add(row);
    if (!flush) flush = setTimeout(flushRows, 250);
  });
  const pending = new Set();
  let flush = null;
  function flushRows() {
    flush = null;
    for (const row of pending) fill(row, row.hd);
    pending.clear();
  }

  async function open(name) {
    detail.hidden = false;
    detail.replaceChildren(h("p", { class: "muted" }, `Loading ${name}…`));
    try {
      const [d, v] = await Promise.all([
        api("GET", `/v1/handlers/${encodeURIComponent(name)}`),
        api("GET", `/v1/handlers/${encodeURIComponent(name)}/versions`),
      ]);
      detail.replaceChildren(...handlerDetail(d, v.versions, ctx, async () => {
        await load();
        await open(name);
      }, () => { detail.hidden = true; }));
      detail.scrollIntoView({ block: "nearest" });
    } catch (e) {
      detail.replaceChildren(notice("error", errorText(e)));
    }
  }

  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => { clearInterval(timer); off(); if (flush) clearTimeout(flush); };
}

function handlerDetail(d, versions, ctx, reload, close) {
  const hd = d.handler;
  const m = d.version.manifest;
  const out = [];
  const msg = h("div", { class: "messages" });
  const act = (f, done) => async () => {
    msg.replaceChildren();
    try {
      await f();
      await reload();
    } catch (e) {
      msg.replaceChildren(notice("error", errorText(e)));
      return;
    }
    if (done) done();
  };
  out.push(h("div", { class: "detail-head" },
    h("h2", null, hd.name),
    h("span", { class: `badge ${hd.enabled ? "good" : "bad"}` }, hd.enabled ? "enabled" : "disabled"),
    h("span", { class: "spacer" }),
    h("button", { type: "button", onclick: close }, "Close")));
  if (m.description) out.push(h("p", null, m.description));
  if (!hd.enabled && hd.disabled_reason) out.push(h("p", { class: "muted" }, `Disabled: ${hd.disabled_reason}`));
  const c = d.circuit;
  out.push(h("dl", { class: "facts" },
    h("dt", null, "Subscribes to"), h("dd", null, m.subscription.events.join(", ")),
    h("dt", null, "Tenants"), h("dd", null, (m.subscription.tenants || []).join(", ") || "all"),
    h("dt", null, "Circuit"), h("dd", null, c ? `${c.state}${c.last_reason ? ` (last opened: ${c.last_reason})` : ""}` : "not loaded"),
    h("dt", null, "Tenant circuits"), h("dd", null, c && c.tenants.length
      ? c.tenants.map((t) => `${t.tenant}: ${t.state}${t.last_reason ? ` (${t.last_reason})` : ""}`).join("; ")
      : "none open"),
    h("dt", null, "Active version"), h("dd", null, `v${hd.active_version}`),
    h("dt", null, "Processed"), h("dd", null, `${d.stats.processed} (${d.stats.failed} failed, ${d.stats.dead_lettered} dead-lettered, ${d.stats.retries} retried)`),
    h("dt", null, "Latency p50 / p90 / p99"), h("dd", null, `${fmtUs(d.stats.latency_p50_us)} / ${fmtUs(d.stats.latency_p90_us)} / ${fmtUs(d.stats.latency_p99_us)}`)));
  out.push(msg);

  if (ctx.admin) {
    const reason = h("input", { type: "text", placeholder: "Reason (optional)", id: "disable-reason" });
    out.push(h("div", { class: "actions" }, hd.enabled
      ? [reason, h("button", { type: "button", id: "disable-handler",
        onclick: act(() => api("POST", `/v1/handlers/${encodeURIComponent(hd.name)}/disable`,
          reason.value.trim() ? { reason: reason.value.trim() } : {})) }, "Disable")]
      : h("button", { type: "button", id: "enable-handler",
        onclick: act(() => api("POST", `/v1/handlers/${encodeURIComponent(hd.name)}/enable`, {})) }, "Enable")));
  }

  const config = h("textarea", { id: "handler-config", rows: 6, spellcheck: false, readOnly: !ctx.admin });
  config.value = pretty(hd.config);
  out.push(h("h3", null, "Config"), config);
  if (ctx.admin) {
    out.push(h("div", { class: "actions" }, h("button", {
      type: "button", id: "save-config",
      onclick: act(async () => {
        let value;
        try { value = JSON.parse(config.value); } catch (e) { throw new Error(`The config is not JSON: ${e.message}`); }
        await api("PUT", `/v1/handlers/${encodeURIComponent(hd.name)}/config`, value);
      }),
    }, "Save config")));
  }

  const { table: vt, tbody } = table(["Version", "Deployed", "By", "Size", "Component", ""]);
  for (const v of [...versions].reverse()) {
    const active = v.version === hd.active_version;
    tbody.append(h("tr", { class: active ? "current" : "" },
      h("td", null, `v${v.version}`, active ? " (active)" : ""),
      h("td", null, fmtTime(v.created_ms)),
      h("td", null, v.deployed_by),
      h("td", null, `${fmtNum(v.module_bytes)} B`),
      h("td", { class: "mono small" }, v.module_hash.slice(0, 16)),
      h("td", null, ctx.admin && !active ? h("button", {
        type: "button", class: "rollback", dataset: { version: v.version },
        onclick: act(() => api("POST", `/v1/handlers/${encodeURIComponent(hd.name)}/rollback`, { version: v.version })),
      }, v.version < hd.active_version ? `Roll back to v${v.version}` : `Switch to v${v.version}`) : null)));
  }
  out.push(h("h3", null, "Versions"), vt);
  return out;
}

/** Upload a component with its manifest; the API's refusal is shown as worded. */
function deployForm(deployed) {
  const component = h("input", { type: "file", id: "deploy-component", accept: ".wasm,application/wasm", required: true });
  const manifestFile = h("input", { type: "file", id: "deploy-manifest", accept: ".json,application/json" });
  const manifestText = h("textarea", { id: "deploy-manifest-text", rows: 4, spellcheck: false,
    placeholder: '{"name": "my-handler", "subscription": {"events": ["message"]}}' });
  const result = h("div", { id: "deploy-result" });
  const form = h("form", { class: "card deploy", id: "deploy-form" },
    h("h2", null, "Deploy"),
    h("label", null, "Component (.wasm) ", component),
    h("label", null, "Manifest (.json) ", manifestFile),
    h("label", { class: "block" }, "…or the manifest as text", manifestText),
    h("button", { type: "submit" }, "Deploy"), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    result.replaceChildren();
    const wasm = component.files[0];
    if (!wasm) { result.append(notice("error", "Choose a component file.")); return; }
    let manifest = manifestText.value.trim();
    if (manifestFile.files[0]) manifest = await manifestFile.files[0].text();
    if (!manifest) { result.append(notice("error", "Choose a manifest file or paste one.")); return; }
    const body = new FormData();
    body.append("manifest", new Blob([manifest], { type: "application/json" }), "manifest.json");
    body.append("component", wasm, wasm.name);
    try {
      const r = await api("POST", "/v1/handlers", body);
      result.append(notice("ok", `Deployed ${r.handler.name} v${r.version.version}`));
      form.reset();
      deployed();
    } catch (err) {
      result.append(notice("error", errorText(err)));
    }
  });
  return form;
}
