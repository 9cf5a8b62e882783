// Small DOM helpers. Every string given to `h` becomes a text node or an
// attribute value, never markup: what handlers control (names, log lines,
// errors, payloads) cannot turn into HTML or script.

/** Set as DOM properties; everything else is an attribute. */
const PROPS = new Set(["value", "checked", "disabled", "hidden", "readOnly", "required",
  "colSpan", "spellcheck", "title"]);

/** Creates an element. `props`: `class`, `dataset`, `on<event>` listeners,
 * the DOM properties in PROPS, or attributes; children: nodes, strings (as text), arrays, null (skipped). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  appendAll(el, children);
  return el;
}

/** Appends children as `h` does: strings as text, null and false skipped. */
export function append(el, ...children) {
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) appendAll(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A message box: `kind` is `error`, `ok` or `note`. */
export function notice(kind, text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** The message of an API error (its own words) or any other error. */
export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

export function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A duration in µs, for humans. */
export function fmtUs(us) {
  if (us === undefined || us === null) return "";
  if (us < 1000) return `${us} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 2 : 1)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

/** A size in bytes, for humans. */
export function fmtBytes(n) {
  if (n === undefined || n === null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "";
  if (Math.abs(n) >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n * 100) / 100);
}

/** JSON, indented, as text for a `<pre>`. */
export function pretty(v) {
  return JSON.stringify(v, null, 2);
}

/** A table with a header row; returns `{table, tbody}`. */
export function table(headers, cls) {
  const tbody = h("tbody");
  const table = h("table", { class: cls || "grid" },
    h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))), tbody);
  return { table, tbody };
}

/** A badge for an outcome name: `ok` green, others red. */
export function outcomeBadge(outcome) {
  return h("span", { class: `badge ${outcome === "ok" ? "good" : "bad"}` }, outcome);
}

/** A button that asks for a second click before it acts (no `confirm()`). */
export function confirmButton(label, confirmLabel, action) {
  let armed = false;
  const b = h("button", {
    type: "button",
    onclick: async () => {
      if (!armed) {
        armed = true;
        b.textContent = confirmLabel;
        b.classList.add("danger");
        setTimeout(() => {
          armed = false;
          b.textContent = label;
          b.classList.remove("danger");
        }, 4000);
        return;
      }
      armed = false;
      b.textContent = label;
      b.classList.remove("danger");
      await action();
    },
  }, label);
  return b;
}

/** Outcome names, as the daemon uses them. */
export const OUTCOMES = ["ok", "handler_error", "out_of_fuel", "timeout", "memory_limit",
  "table_limit", "stack_overflow", "trap", "log_limit", "emit_limit", "kv_limit",
  "result_limit", "host_error"];
