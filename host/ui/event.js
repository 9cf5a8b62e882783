// One event: the event itself while the daemon still keeps it, and every
// delivery attempt with its outcome, error, logs and emitted events. All of
// it is handler- or producer-controlled text, shown as text.

import { api } from "./api.js";
import { h, notice, errorText, fmtTime, fmtUs, fmtNum, pretty, outcomeBadge } from "./dom.js";

/** Opens event `id` in `panel`. */
export async function openEvent(panel, id, ctx) {
  panel.hidden = false;
  panel.replaceChildren(h("p", { class: "muted" }, `Loading event ${id}…`));
  let d;
  try {
    d = await api("GET", `/v1/events/${encodeURIComponent(id)}`);
  } catch (e) {
    panel.replaceChildren(head(id, panel), notice("error", errorText(e)));
    return;
  }
  const out = [head(id, panel)];
  if (d.event) {
    const e = d.event;
    out.push(h("dl", { class: "facts" },
      h("dt", null, "Type"), h("dd", null, e.type),
      h("dt", null, "Tenant"), h("dd", null, e.tenant || "—"),
      h("dt", null, "Source"), h("dd", null, e.source),
      h("dt", null, "Accepted"), h("dd", null, fmtTime(e.time)),
      h("dt", null, "Priority"), h("dd", null, e.priority || "normal")));
    out.push(h("h3", null, "Payload"), h("pre", { class: "json", id: "event-payload" }, pretty(e.payload)));
    if (e.metadata && Object.keys(e.metadata).length) {
      out.push(h("h3", null, "Metadata"), h("pre", { class: "json" }, pretty(e.metadata)));
    }
  } else {
    out.push(h("p", { class: "muted" }, "Every delivery of this event is final, so the daemon no longer keeps " +
      "the event itself (a dead letter keeps it: see Dead letters)."));
  }
  out.push(h("h3", null, `Attempts (${d.deliveries.length})`));
  for (const a of d.deliveries) out.push(attempt(a));
  if (!d.deliveries.length) out.push(h("p", { class: "muted" }, "No attempt has finished yet."));
  panel.replaceChildren(...out);
  panel.scrollIntoView({ block: "nearest" });
}

function head(id, panel) {
  return h("div", { class: "detail-head" }, h("h2", null, "Event ", h("span", { class: "mono" }, id)),
    h("span", { class: "spacer" }),
    h("button", { type: "button", onclick: () => { panel.hidden = true; } }, "Close"));
}

function attempt(a) {
  const logs = Array.isArray(a.logs) ? a.logs : null;
  const emitted = Array.isArray(a.emitted) ? a.emitted : null;
  return h("div", { class: "attempt", dataset: { handler: a.handler, attempt: a.attempt } },
    h("div", { class: "attempt-head" }, outcomeBadge(a.outcome),
      h("strong", null, ` ${a.handler}`), h("span", { class: "muted" }, ` v${a.version} · attempt ${a.attempt} · ` +
        `${fmtTime(a.time_ms)} · ${fmtUs(a.duration_us)} · fuel ${fmtNum(a.fuel)} · memory ${fmtNum(a.memory_bytes)} B`)),
    a.error ? h("pre", { class: "error-text" }, a.error) : null,
    logs ? h("div", { class: "logs" }, h("h4", null, `Logs (${logs.length})`),
      logs.length ? h("ol", { class: "log-lines" }, logs.map(logLine)) : h("p", { class: "muted" }, "Nothing logged.")) : null,
    emitted && emitted.length ? h("div", { class: "emitted" },
      h("h4", null, `Emitted events (${a.emitted_total ?? emitted.length})`),
      a.outcome === "ok" ? null : h("p", { class: "muted small" }, "The attempt failed, so these were discarded."),
      emitted.map((e) => h("div", { class: "emitted-event" },
        h("span", { class: "mono" }, e.type), e.tenant ? ` · tenant ${e.tenant}` : "", e.key ? ` · key ${e.key}` : "",
        h("pre", { class: "json" }, e.payload, e.payload_truncated ? " … (cut)" : ""))),
      (a.emitted_total ?? 0) > emitted.length
        ? h("p", { class: "muted small" }, `…and ${a.emitted_total - emitted.length} more, not kept in the log.`) : null) : null);
}

function logLine(r) {
  const fields = r.fields && Object.keys(r.fields).length
    ? Object.entries(r.fields).map(([k, v]) => h("span", { class: "field" }, `${k}=${v}`)) : null;
  return h("li", { class: `log ${r.level || ""}` },
    h("span", { class: "level" }, r.level || ""),
    r.stream && r.stream !== "log" ? h("span", { class: "muted" }, ` ${r.stream}`) : null,
    " ", h("span", { class: "message" }, r.message), fields ? [" ", fields] : null);
}
