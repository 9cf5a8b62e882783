// The dashboard's shell: sign-in, the navigation (only what the token may
// see), hash routing between pages, and the one live stream they share.

import { api, session, setUnauthorizedHandler, Stream } from "./api.js";
import { h, notice } from "./dom.js";
import * as handlers from "./handlers.js";
import * as live from "./live.js";
import * as charts from "./charts.js";
import * as deadLetters from "./dead_letters.js";
import * as sources from "./sources.js";

const PAGES = {
  handlers: { module: handlers, title: "Handlers", allTenants: true },
  live: { module: live, title: "Live deliveries", allTenants: false },
  charts: { module: charts, title: "Throughput and latency", allTenants: true },
  "dead-letters": { module: deadLetters, title: "Dead letters", allTenants: false },
  sources: { module: sources, title: "Sources", allTenants: false },
};

const $ = (id) => document.getElementById(id);
let ctx = null;
let unmount = null;

function signedOut(message) {
  if (ctx) ctx.stream.stop();
  ctx = null;
  if (unmount) unmount();
  unmount = null;
  session.clear();
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("who").textContent = "";
  $("page").replaceChildren();
  $("sign-in").hidden = false;
  const err = $("sign-in-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("token").focus();
}

async function signIn(token) {
  session.set(token);
  let me;
  try {
    me = await api("GET", "/v1/whoami");
  } catch (e) {
    signedOut(e.message);
    return;
  }
  const admin = me.scopes.includes("admin");
  if (!admin && !me.scopes.includes("read")) {
    signedOut(`Token "${me.name}" has the scopes ${me.scopes.join(", ")}; the dashboard needs read or admin.`);
    return;
  }
  ctx = {
    me,
    admin,
    // Tokens restricted to tenants may not read what spans every tenant.
    allTenants: me.tenants.length === 0,
    stream: new Stream(),
  };
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("nav").hidden = false;
  const scope = admin ? "admin" : "read";
  const tenants = ctx.allTenants ? "all tenants" : `tenants ${me.tenants.join(", ")}`;
  $("who").textContent = `${me.name} · ${scope} · ${tenants}`;
  for (const a of $("nav").querySelectorAll("a")) {
    a.hidden = PAGES[a.dataset.page].allTenants && !ctx.allTenants;
  }
  ctx.stream.start();
  route();
}

function route() {
  if (!ctx) return;
  const wanted = location.hash.replace(/^#\//, "");
  const name = PAGES[wanted] ? wanted : (ctx.allTenants ? "handlers" : "live");
  for (const a of $("nav").querySelectorAll("a")) {
    a.classList.toggle("current", a.dataset.page === name);
  }
  if (unmount) unmount();
  const page = PAGES[name];
  const root = h("div", { class: "page", dataset: { page: name } });
  $("page").replaceChildren(h("h1", null, page.title), root);
  document.title = `${page.title} · Hookbox`;
  // A page the token may not see is hidden from the navigation; opened by
  // its address, it shows the API's refusal.
  unmount = page.module.mount(root, ctx) || null;
}

document.addEventListener("DOMContentLoaded", () => {
  setUnauthorizedHandler((message) => signedOut(`Signed out: ${message}`));
  $("sign-in").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    signIn(token);
  });
  $("sign-out").addEventListener("click", () => signedOut(""));
  window.addEventListener("hashchange", route);
  if (session.token) signIn(session.token);
  else signedOut("");
});
