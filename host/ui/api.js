// The admin API from the browser: the token lives in this tab's session
// storage and goes out as `Authorization: Bearer` (no cookies, so other
// sites cannot make requests with it). `GET /v1/stream` is read with fetch
// (EventSource cannot send that header) and parsed here.

const TOKEN_KEY = "hookbox.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

/** An error answer of the API, in its own words. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called when the API says the token is no longer valid (401). */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

async function failure(res) {
  let code = "error";
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch { /* not the error shape: keep the status line */ }
  if (res.status === 401) onUnauthorized(message);
  return new ApiError(res.status, code, message);
}

/** One request. `body`: a FormData (multipart), or anything JSON. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  const init = { method, headers, cache: "no-store" };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/**
 * The live stream of delivery outcomes, shared by every page: one
 * connection, reconnected with a growing pause when it ends. Listeners get
 * each notice; `lagged` counts notices the daemon could not send us.
 */
export class Stream {
  constructor() {
    this.listeners = new Set();
    this.state = "closed";
    this.lagged = 0;
    this.received = 0;
    this.stateListeners = new Set();
    this.abort = null;
    this.stopped = true;
  }

  on(f) { this.listeners.add(f); return () => this.listeners.delete(f); }
  onState(f) { this.stateListeners.add(f); f(this.state); return () => this.stateListeners.delete(f); }

  setState(s, detail) {
    this.state = s;
    this.detail = detail || "";
    for (const f of this.stateListeners) f(s, this.detail);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    let pause = 500;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        this.setState("connecting");
        const res = await fetch("/v1/stream", {
          headers: { Authorization: `Bearer ${session.token}`, Accept: "text/event-stream" },
          signal: this.abort.signal,
          cache: "no-store",
        });
        if (!res.ok) {
          const e = await failure(res);
          this.setState("refused", e.message);
          if (res.status === 401 || res.status === 403) return;
        } else {
          this.setState("live");
          pause = 500;
          await this.read(res.body.getReader());
          if (!this.stopped) this.setState("ended", "the daemon ended the stream");
        }
      } catch (e) {
        if (this.stopped) return;
        this.setState("ended", String(e));
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10000);
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (event === "lagged") {
      this.lagged += Number(data.join("")) || 0;
      return;
    }
    if (event !== "delivery" || data.length === 0) return;
    let notice;
    try { notice = JSON.parse(data.join("\n")); } catch { return; }
    notice.received_ms = Date.now();
    this.received += 1;
    for (const f of this.listeners) f(notice);
  }
}
