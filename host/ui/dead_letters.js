// Dead letters: browse (handler, time range, pages), inspect one (the
// event and every attempt's error), replay one or the selected ones
// (optionally to another version), replay all that match in bulk, purge.

import { api, query } from "./api.js";
import { append, h, notice, errorText, fmtTime, pretty, table, confirmButton, outcomeBadge } from "./dom.js";

export function mount(root, ctx) {
  const f = {
    handler: h("input", { type: "text", id: "dl-handler", placeholder: "handler" }),
    since: h("input", { type: "datetime-local", id: "dl-since", step: 1 }),
    until: h("input", { type: "datetime-local", id: "dl-until", step: 1 }),
  };
  const apply = h("button", { type: "button", id: "dl-apply" }, "Apply");
  const status = h("div", { class: "messages", id: "dl-messages" });
  const { table: grid, tbody } = table(["", "Dead-lettered", "Handler", "Event type", "Tenant",
    "Attempts", "Last outcome", "Last error"], "grid dead-letters");
  grid.id = "dl-table";
  const more = h("button", { type: "button", id: "dl-more", hidden: true }, "Older…");
  const detail = h("section", { class: "card detail", id: "dl-detail", hidden: true });
  const selectAll = h("input", { type: "checkbox", id: "dl-select-all", title: "Select all shown" });
  if (ctx.admin) grid.querySelector("th").append(selectAll);
  const version = h("input", { type: "number", min: 1, id: "dl-version", placeholder: "version (active)" });
  const selected = new Set();
  let cursor = null;
  let items = [];

  const actions = ctx.admin ? h("div", { class: "toolbar actions" },
    h("label", null, "Replay to version ", version),
    h("button", { type: "button", id: "dl-replay-selected", onclick: replaySelected }, "Replay selected"),
    confirmButton("Replay all matching", "Replay all matching?", replayMatching),
    confirmButton("Purge matching", "Really purge?", purge)) : null;

  append(root, h("div", { class: "toolbar" }, f.handler, h("label", null, "since ", f.since),
    h("label", null, "until ", f.until), apply), actions, status, grid, more, detail);

  const ms = (el) => (el.value ? String(new Date(el.value).getTime()) : "");
  const targetVersion = () => (version.value ? { version: Number(version.value) } : {});

  function say(kind, text) { status.replaceChildren(notice(kind, text)); }

  async function load(append) {
    try {
      const page = await api("GET", `/v1/dead-letters${query({
        handler: f.handler.value.trim(), since: ms(f.since), until: ms(f.until),
        cursor: append ? cursor : "", limit: 100,
      })}`);
      if (!append) { items = []; selected.clear(); tbody.replaceChildren(); selectAll.checked = false; }
      items.push(...page.dead_letters);
      for (const d of page.dead_letters) tbody.append(row(d));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (!items.length) tbody.append(h("tr", null, h("td", { colSpan: 8, class: "muted" }, "No dead letters.")));
      root.dataset.loaded = String(Date.now());
    } catch (e) {
      say("error", errorText(e));
    }
  }

  function row(d) {
    const last = d.errors[d.errors.length - 1] || {};
    // Only admin tokens may replay, so only they select.
    const box = ctx.admin ? h("input", { type: "checkbox", class: "dl-select", dataset: { id: d.id },
      onclick: (e) => { e.stopPropagation(); if (box.checked) selected.add(d.id); else selected.delete(d.id); } }) : null;
    return h("tr", { dataset: { deadLetter: d.id, handler: d.handler }, onclick: () => show(d) },
      h("td", null, box),
      h("td", { class: "mono small" }, fmtTime(d.time_ms)),
      h("td", null, d.handler, h("span", { class: "muted" }, ` v${d.version}`)),
      h("td", null, d.event.type),
      h("td", null, d.event.tenant),
      h("td", null, String(d.errors.length)),
      h("td", null, last.outcome ? outcomeBadge(last.outcome) : ""),
      h("td", { class: "error-text" }, (last.error || "").slice(0, 300)));
  }

  selectAll.addEventListener("change", () => {
    for (const box of tbody.querySelectorAll(".dl-select")) {
      box.checked = selectAll.checked;
      if (box.checked) selected.add(box.dataset.id); else selected.delete(box.dataset.id);
    }
  });

  function show(d) {
    detail.hidden = false;
    const replay = ctx.admin ? h("button", { type: "button", id: "dl-replay-one",
      onclick: async () => {
        try {
          await api("POST", `/v1/dead-letters/${encodeURIComponent(d.id)}/replay`, targetVersion());
          detail.hidden = true;
          await load(false);
          say("ok", `Replayed ${d.id}`);
        } catch (e) { say("error", errorText(e)); }
      } }, "Replay") : null;
    detail.replaceChildren(
      h("div", { class: "detail-head" }, h("h2", null, "Dead letter ", h("span", { class: "mono" }, d.id)),
        h("span", { class: "spacer" }), replay,
        h("button", { type: "button", onclick: () => { detail.hidden = true; } }, "Close")),
      h("dl", { class: "facts" },
        h("dt", null, "Handler"), h("dd", null, `${d.handler} v${d.version}`),
        h("dt", null, "Event"), h("dd", { class: "mono" }, d.event.id),
        h("dt", null, "Type"), h("dd", null, d.event.type),
        h("dt", null, "Tenant"), h("dd", null, d.event.tenant || "—"),
        h("dt", null, "Source"), h("dd", null, d.event.source)),
      h("h3", null, "Attempts"),
      h("ol", { class: "attempt-errors" }, d.errors.map((a) => h("li", null, outcomeBadge(a.outcome),
        ` attempt ${a.attempt} · ${fmtTime(a.time_ms)}`, a.error ? h("pre", { class: "error-text" }, a.error) : null))),
      h("h3", null, "Payload"), h("pre", { class: "json" }, pretty(d.event.payload)));
    detail.scrollIntoView({ block: "nearest" });
  }

  async function replaySelected() {
    if (!selected.size) { say("error", "Select dead letters first."); return; }
    let done = 0;
    const failures = [];
    for (const id of [...selected]) {
      try {
        await api("POST", `/v1/dead-letters/${encodeURIComponent(id)}/replay`, targetVersion());
        done += 1;
      } catch (e) {
        failures.push(`${id}: ${errorText(e)}`);
      }
    }
    await load(false);
    if (failures.length) say("error", `Replayed ${done}; failed: ${failures.join("; ")}`);
    else say("ok", `Replayed ${done} dead letter${done === 1 ? "" : "s"}.`);
  }

  async function replayMatching() {
    const handler = f.handler.value.trim();
    if (!handler) { say("error", "Bulk replay needs a handler: fill in the handler filter."); return; }
    const body = { handler, ...targetVersion() };
    if (ms(f.since)) body.since = Number(ms(f.since));
    if (ms(f.until)) body.until = Number(ms(f.until));
    try {
      const r = await api("POST", "/v1/dead-letters/replay", body);
      await load(false);
      say("ok", `Replayed ${r.replayed} dead letters of ${handler} (${r.skipped} skipped).`);
    } catch (e) { say("error", errorText(e)); }
  }

  async function purge() {
    try {
      const r = await api("DELETE", `/v1/dead-letters${query({ handler: f.handler.value.trim(), before: ms(f.until) })}`);
      await load(false);
      say("ok", `Purged ${r.purged} dead letters.`);
    } catch (e) { say("error", errorText(e)); }
  }

  apply.addEventListener("click", () => load(false));
  more.addEventListener("click", () => load(true));
  load(false);
}
