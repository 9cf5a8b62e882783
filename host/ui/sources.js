// Sources: each Zulip realm's connection state, queue position, counters
// and last error (other sources will appear here as they are added), and,
// for admin tokens, the audit log of who changed what.

import { api, query } from "./api.js";
import { append, h, notice, errorText, fmtTime, pretty, table } from "./dom.js";

const REFRESH_MS = 5000;

export function mount(root, ctx) {
  const realms = h("div", { id: "zulip-realms" });
  const audit = h("div", { id: "audit-log" });
  append(root, h("section", { class: "card" }, h("h2", null, "Zulip realms"), realms),
    ctx.admin ? h("section", { class: "card" }, h("h2", null, "Audit log"), audit) : null);

  async function loadRealms() {
    try {
      const body = await api("GET", "/v1/zulip");
      if (!body.realms.length) {
        realms.replaceChildren(h("p", { class: "muted" },
          "No Zulip realm is configured (or none this token may see). Add a [[zulip]] table to the daemon's config."));
        return;
      }
      const { table: t, tbody } = table(["Realm", "Site", "State", "Queue", "Last event", "Events",
        "Errors", "Rate limited", "Queue losses", "Reply sink", "Last error"]);
      for (const r of body.realms) {
        const err = r.last_error || (r.sink && r.sink.last_error);
        tbody.append(h("tr", { dataset: { realm: r.name } },
          h("td", null, r.name),
          h("td", { class: "small" }, r.site),
          h("td", null, h("span", { class: `badge ${r.connected ? "good" : "bad"}` }, r.connected ? "connected" : "disconnected")),
          h("td", { class: "mono small" }, r.queue_id || "—", r.last_event_id !== null && r.last_event_id !== undefined ? ` @${r.last_event_id}` : ""),
          h("td", { class: "small" }, fmtTime(r.last_event_ms)),
          h("td", null, String(r.counters.events)),
          h("td", null, String(r.counters.errors)),
          h("td", null, String(r.counters.rate_limited)),
          h("td", null, String(r.counters.queue_losses)),
          h("td", null, r.sink && r.sink.enabled ? `${r.sink.sent} sent, ${r.sink.failures} failed` : "off"),
          h("td", { class: "error-text" }, err ? `${fmtTime(err.time_ms)} ${err.kind}: ${err.message}` : "")));
      }
      realms.replaceChildren(t);
    } catch (e) {
      realms.replaceChildren(notice("error", errorText(e)));
    }
  }

  let cursor = null;
  const { table: at, tbody: atBody } = table(["Time", "Actor", "Action", "Target", "Detail"]);
  const more = h("button", { type: "button", hidden: true, onclick: () => loadAudit(true) }, "Older…");
  async function loadAudit(append) {
    try {
      const page = await api("GET", `/v1/audit${query({ cursor: append ? cursor : "", limit: 100 })}`);
      if (!append) atBody.replaceChildren();
      for (const a of page.entries) {
        atBody.append(h("tr", null, h("td", { class: "mono small" }, fmtTime(a.time_ms)),
          h("td", null, a.actor), h("td", null, a.action), h("td", null, a.target),
          h("td", null, h("code", { class: "small" }, a.detail === null ? "" : pretty(a.detail)))));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      audit.replaceChildren(at, more);
    } catch (e) {
      audit.replaceChildren(notice("error", errorText(e)));
    }
  }

  loadRealms();
  if (ctx.admin) loadAudit(false);
  const timer = setInterval(loadRealms, REFRESH_MS);
  return () => clearInterval(timer);
}
