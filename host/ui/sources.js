// Sources and sinks: each Zulip realm's connection state, queue position,
// counters and last error; for tokens that read every tenant, each Redis
// bus (source and `redis.publish` sink) and each webhook endpoint (their
// routes span tenants); for admin tokens, the audit log of who changed what.

import { api, query } from "./api.js";
import { append, h, notice, errorText, fmtTime, pretty, table } from "./dom.js";

const REFRESH_MS = 5000;

export function mount(root, ctx) {
  const realms = h("div", { id: "zulip-realms" });
  const buses = h("div", { id: "redis-buses" });
  const endpoints = h("div", { id: "webhook-endpoints" });
  const audit = h("div", { id: "audit-log" });
  append(root, h("section", { class: "card" }, h("h2", null, "Zulip realms"), realms),
    ctx.allTenants ? h("section", { class: "card" }, h("h2", null, "Redis buses"), buses) : null,
    ctx.allTenants ? h("section", { class: "card" }, h("h2", null, "Webhook endpoints"), endpoints) : null,
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

  async function loadBuses() {
    try {
      const body = await api("GET", "/v1/redis");
      if (!body.buses.length) {
        buses.replaceChildren(h("p", { class: "muted" },
          "No Redis bus is configured. Add a [[redis]] table to the daemon's config."));
        return;
      }
      const { table: t, tbody } = table(["Bus", "Server", "Mode", "Reads", "State", "Last event",
        "Received", "Accepted", "Duplicates", "Skipped", "Errors", "Sink", "Last error"]);
      for (const b of body.buses) {
        const c = b.counters;
        const err = b.last_error || b.sink.last_error;
        const skipped = c.malformed + c.refused + c.own;
        tbody.append(h("tr", { dataset: { bus: b.name } },
          h("td", null, b.name),
          h("td", { class: "small" }, b.url),
          h("td", null, b.mode),
          h("td", { class: "mono small" }, b.source ? b.subscribed : "—"),
          h("td", null, b.source
            ? h("span", { class: `badge ${b.connected ? "good" : "bad"}` }, b.connected ? "connected" : "disconnected")
            : h("span", { class: "muted" }, "sink only")),
          h("td", { class: "small" }, fmtTime(b.last_event_ms)),
          h("td", null, String(c.received)),
          h("td", null, String(c.accepted)),
          h("td", null, String(c.duplicates)),
          h("td", { title: b.last_skipped ? `${b.last_skipped.kind}: ${b.last_skipped.message}` : "" },
            `${skipped} (${c.malformed} malformed, ${c.refused} refused, ${c.own} own)`),
          h("td", null, String(c.errors)),
          h("td", null, b.sink.enabled ? `${b.sink.published} published, ${b.sink.failures} failed` : "off"),
          h("td", { class: "error-text" }, err ? `${fmtTime(err.time_ms)} ${err.kind}: ${err.message}` : "")));
      }
      buses.replaceChildren(t);
    } catch (e) {
      buses.replaceChildren(notice("error", errorText(e)));
    }
  }

  async function loadEndpoints() {
    try {
      const body = await api("GET", "/v1/webhooks");
      if (!body.endpoints.length) {
        endpoints.replaceChildren(h("p", { class: "muted" },
          "No webhook endpoint is configured. Add a [[webhook]] table to the daemon's config."));
        return;
      }
      const { table: t, tbody } = table(["Endpoint", "Kind", "Origin", "Tenants", "Sink", "Sent",
        "Failed", "Rate limited", "Last error"]);
      for (const w of body.endpoints) {
        const err = w.last_error;
        tbody.append(h("tr", { dataset: { endpoint: w.name } },
          h("td", null, w.name),
          h("td", null, w.kind),
          h("td", { class: "small" }, w.origin),
          h("td", null, w.tenants.length ? w.tenants.join(", ") : h("span", { class: "muted" }, "all")),
          h("td", { class: "mono small" }, w.handler),
          h("td", null, String(w.sent)),
          h("td", null, String(w.failures)),
          h("td", null, String(w.rate_limited)),
          h("td", { class: "error-text" }, err ? `${fmtTime(err.time_ms)} ${err.kind}: ${err.message}` : "")));
      }
      endpoints.replaceChildren(t);
    } catch (e) {
      endpoints.replaceChildren(notice("error", errorText(e)));
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

  function refresh() {
    loadRealms();
    if (ctx.allTenants) {
      loadBuses();
      loadEndpoints();
    }
  }
  refresh();
  if (ctx.admin) loadAudit(false);
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}
