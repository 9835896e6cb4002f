"""The dashboard: ``GET /_fakests/dashboard``, one self-contained page that watches a fakests server live.

It polls the admin API every second and shows the request journal of every sandbox (newest first,
filtered server-side), the loaded scenario rules with their counters, the directory of the selected
sandbox (with its credentials, to copy) and buttons that arm library scenarios. Inline CSS and
vanilla JavaScript, no CDN, no build step.

The page itself is public; the data calls are not: with ``admin_token`` set, open the page with
``?token=<admin_token>`` and it sends that as ``Authorization: Bearer``. Everything rendered from data
goes through ``textContent``/text nodes, never ``innerHTML``; the Content-Security-Policy also allows
only this page's own script and style (by hash), so injected markup could not run script anyway.

The two JSON endpoints it needs beyond the per-sandbox API are here too (mounted by ``admin.routes``):
``GET /journal`` (the journal across sandboxes) and ``GET /rules`` (loaded rules of every sandbox).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import re
from collections.abc import Callable
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..state.journal import JournalEntry
from ..sts.identity import IDENTITY_ENDPOINTS
from ..sts.pages import BANNER
from ._http import AdminError, admin_endpoint, sandboxes_of

# GET /journal: sandbox, endpoint and grant_type match exactly; client_id and correlation_id match a
# part, case-insensitively (a person pastes or types a piece); status is 400, 4xx or "failed" (>= 400).
JOURNAL_QUERY = ("sandbox", "endpoint", "client_id", "grant_type", "status", "correlation_id", "since", "limit")
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000
ENDPOINTS = ("token", "authorize", "devicecode", "device_login", "discovery", "jwks", "logout", "userrealm",
             "instance_discovery", "error", *IDENTITY_ENDPOINTS)

_STYLE = """
*{box-sizing:border-box}
body{font-family:"Segoe UI",Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0;color:#1b1b1b;font-size:14px}
header{background:#fff;padding:10px 24px 12px;box-shadow:0 1px 4px rgba(0,0,0,.15)}
.banner{font-size:12px;color:#a80000;margin-bottom:6px}
.bar{display:flex;align-items:center;gap:18px;flex-wrap:wrap}
h1{font-size:20px;font-weight:600;margin:0 8px 0 0}
h2{font-size:16px;font-weight:600;margin:0 0 10px}
#rules+h2{margin-top:18px}
h3{font-size:12px;font-weight:600;margin:16px 0 6px;color:#555;text-transform:uppercase;letter-spacing:.05em}
main{padding:16px 24px;display:grid;gap:16px}
.panel{background:#fff;padding:14px 18px 18px;box-shadow:0 1px 4px rgba(0,0,0,.15);min-width:0;overflow-x:auto}
.head{display:flex;align-items:baseline;gap:12px}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.5fr);gap:16px;align-items:start}
@media (max-width:1000px){.cols{grid-template-columns:1fr}}
.muted{color:#666;font-weight:400;font-size:13px}
.status{font-size:13px;color:#666;margin-left:auto}
.status.ok::before{content:"\\25CF";color:#107c10;margin-right:6px}
.status.err{color:#e81123}
label{font-size:13px;color:#444;display:inline-flex;align-items:center;gap:6px}
input,select,button{font:inherit;font-size:13px}
input,select{padding:4px 6px;border:1px solid #8a8886;border-radius:2px;background:#fff}
input:focus,select:focus{outline:2px solid #0067b8;outline-offset:-1px}
button{background:#0067b8;color:#fff;border:0;padding:5px 14px;cursor:pointer;border-radius:2px}
button:hover{background:#005a9e}
button.secondary{background:#e1e1e1;color:#1b1b1b}
button.secondary:hover{background:#d0d0d0}
button.small{padding:2px 10px}
button:disabled{background:#f3f2f1;color:#a19f9d;border-color:#e1e1e1;cursor:not-allowed}
.filters{display:flex;gap:14px;flex-wrap:wrap;align-items:center;margin-bottom:10px}
.scroll{max-height:460px;overflow:auto;border:1px solid #e1e1e1}
table{border-collapse:collapse;width:100%}
th{position:sticky;top:0;background:#f8f8f8;text-align:left;font-weight:600;font-size:12px;color:#444;
padding:6px 8px;border-bottom:1px solid #ddd;white-space:nowrap}
td{padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top;font-size:12.5px;overflow-wrap:anywhere}
#journal th,#journal td{padding:4px 6px}
#journal td{white-space:nowrap;font-size:12px;overflow-wrap:normal}
#journal td.c-time,#journal td.c-sandbox,#journal td.c-client_id,#journal td.c-correlation_id{
font-family:Consolas,"Cascadia Mono",Menlo,monospace;font-size:11.5px}
#journal td.c-rule{white-space:normal;overflow-wrap:anywhere;min-width:120px;max-width:200px}
#journal td.c-duration{text-align:right}
#journal tr.fail td{background:#fde7e9}
#journal tr.fail td:first-child{box-shadow:inset 4px 0 #e81123}
#journal tr.ruled:not(.fail) td:first-child{box-shadow:inset 4px 0 #ffb900}
#journal td.empty{font-family:inherit;color:#666;padding:14px 8px}
.c-status,.c-aadsts{font-weight:600}
tr.fail .c-status,tr.fail .c-aadsts,tr.fail .c-fault{color:#a80000}
.num{text-align:right}
code{font-family:Consolas,"Cascadia Mono",Menlo,monospace;font-size:12px}
code.copy{background:#f3f2f1;padding:1px 4px;border-radius:2px;cursor:copy;user-select:all;white-space:nowrap}
code.copied{background:#dff6dd}
.group{border:1px solid #e1e1e1;margin-bottom:10px}
.group-head{display:flex;justify-content:space-between;align-items:center;padding:6px 8px;background:#f8f8f8}
.group td{border-bottom:0;border-top:1px solid #eee}
tr.fired .c-fired{color:#a80000;font-weight:600}
.library{display:flex;flex-wrap:wrap;gap:6px}
button.lib{background:#fff;color:#0067b8;border:1px solid #0067b8;padding:3px 10px}
button.lib:hover{background:#eff6fc}
#notice{margin-top:10px;font-size:13px;min-height:1em}
#notice.err,.error{color:#e81123}
.bad{color:#a80000;font-weight:600}
.kv{margin:0 0 4px}
"""

_SCRIPT = """
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  const token = query.get("token") || "";
  const base = location.pathname.replace(/\\/dashboard\\/?$/, "");
  const enc = encodeURIComponent;
  let selected = query.get("sandbox") || "default";
  let libraryLoaded = false, paused = false, timer = 0, running = false, again = false;
  const shown = {};

  // Every piece of data becomes a text node (append of a string), never parsed as markup.
  function h(tag, cls, ...children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    for (const c of children) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }
  function changed(key, value) {
    const text = JSON.stringify(value);
    if (shown[key] === text) return false;  // unchanged: keep the DOM, and a person's text selection
    shown[key] = text;
    return true;
  }
  function table(headers, rows, cls) {
    return h("table", cls, h("thead", null, h("tr", null, ...headers.map((t) => h("th", null, t)))),
             h("tbody", null, ...rows.map((cells) => h("tr", null, ...cells.map((c) => h("td", null, c))))));
  }
  function copyable(text) {
    const code = h("code", "copy", text);
    code.title = "click to copy";
    code.addEventListener("click", () => {
      if (!navigator.clipboard) return;
      navigator.clipboard.writeText(text).then(() => {
        code.classList.add("copied");
        setTimeout(() => code.classList.remove("copied"), 800);
      }, () => {});
    });
    return code;
  }

  async function api(method, path, body) {
    const headers = {Accept: "application/json"};
    if (token) headers.Authorization = "Bearer " + token;
    const init = {method, headers, cache: "no-store", signal: AbortSignal.timeout(5000)};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(base + path, init);
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (r.status === 401) {
      throw new Error("The admin API needs the admin token: open this page with ?token=<admin_token>.");
    }
    if (!r.ok) throw new Error((data && data.error_description) || ("HTTP " + r.status));
    return data;
  }

  // --- the journal ----------------------------------------------------------------------------------
  const failed = (e) => e.status >= 400 || !!e.fault;
  const COLUMNS = [
    ["time", (e) => new Date(e.at * 1000).toISOString().slice(11, 23)], ["sandbox", (e) => e.sandbox],
    ["method", (e) => e.method], ["endpoint", (e) => e.endpoint], ["client_id", (e) => e.client_id],
    ["grant_type", (e) => e.grant_type], ["status", (e) => e.status], ["aadsts", (e) => e.aadsts],
    ["rule", (e) => e.rule], ["fault", (e) => e.fault], ["correlation_id", (e) => e.correlation_id],
    ["duration", (e) => e.duration_ms.toFixed(1) + " ms"],
  ];
  function journalQuery() {
    const q = new URLSearchParams({limit: "200"});
    for (const input of $("filters").elements) {
      if (input.name && input.value.trim()) q.set(input.name, input.value.trim());
    }
    return q.toString();
  }
  function renderJournal(data) {
    if (!changed("journal", data)) return;
    const rows = data.entries.map((e) => {
      const tr = h("tr", failed(e) ? "fail" : (e.rule ? "ruled" : ""));
      tr.dataset.seq = String(e.seq);
      for (const [name, get] of COLUMNS) tr.append(h("td", "c-" + name, get(e)));
      tr.cells[6].title = e.error || "";
      tr.cells[0].title = new Date(e.at * 1000).toISOString();
      return tr;
    });
    if (!rows.length) {
      const td = h("td", "empty", "No matching requests.");
      td.colSpan = COLUMNS.length;
      rows.push(h("tr", null, td));
    }
    $("journal").tBodies[0].replaceChildren(...rows);
    const failures = data.entries.filter(failed).length;
    $("journal-count").textContent = data.entries.length + " of " + data.matching + " matching, newest first; "
      + failures + " failed";
  }

  // --- sandboxes, rules, library, directory -----------------------------------------------------------
  function fillSelect(select, ids, first) {
    const value = select.id === "sandbox" ? selected : select.value;
    const options = first ? [new Option(first, "")] : [];
    for (const id of ids) options.push(new Option(id, id));
    if (value && !ids.includes(value)) options.push(new Option(value + " (gone)", value));
    select.replaceChildren(...options);
    select.value = value;
  }
  function renderSandboxes(list) {
    const ids = list.map((s) => s.sandbox_id);
    const lost = list.reduce((n, s) => n + (s.journal_lost || 0), 0);
    if (!changed("sandboxes", [ids, lost])) return;
    fillSelect($("sandbox"), ids, null);
    fillSelect($("f-sandbox"), ids, "all");
    $("sandbox-count").textContent = ids.length + (ids.length === 1 ? " sandbox" : " sandboxes");
    // Requests answered but not journaled (a full disk, an unreachable store): the journal below is incomplete.
    $("journal-lost").textContent = lost ? lost + " request(s) could not be journaled" : "";
  }
  function renderRules(groups) {
    if (!changed("rules", groups)) return;
    if (!groups.length) {
      $("rules").replaceChildren(h("p", "muted", "No scenario rules are loaded in any sandbox."));
      return;
    }
    $("rules").replaceChildren(...groups.map((g) => {
      const clear = h("button", "small secondary clear", "Clear");
      clear.type = "button";
      clear.addEventListener("click", () => act(
        () => api("DELETE", "/sandboxes/" + enc(g.sandbox_id) + "/scenarios"),
        () => "Cleared the scenarios of sandbox " + g.sandbox_id + "."));
      const rows = g.rules.map((r) => {
        const tr = h("tr", r.fired ? "fired" : "", h("td", "c-scenario", r.scenario), h("td", "c-rule", r.rule),
                     h("td", "num c-matched", r.matched), h("td", "num c-fired", r.fired));
        tr.title = r.description || "";
        return tr;
      });
      const head = h("thead", null, h("tr", null, ...["scenario", "rule", "matched", "fired"].map(
        (t) => h("th", t === "matched" || t === "fired" ? "num" : null, t))));
      const group = h("div", "group", h("div", "group-head", h("span", null, "sandbox ", h("code", null, g.sandbox_id)),
                                        clear), h("table", null, head, h("tbody", null, ...rows)));
      group.dataset.sandbox = g.sandbox_id;
      return group;
    }));
  }
  function renderLibrary(list) {
    $("library").replaceChildren(...list.map((s) => {
      const b = h("button", "lib", s.name);
      b.type = "button";
      b.dataset.name = s.name;
      b.title = s.error || s.description || "";
      if (s.error) b.disabled = true;
      else b.addEventListener("click", () => act(
        () => api("POST", "/sandboxes/" + enc(selected) + "/scenarios", {name: s.name}),
        (r) => "Armed " + r.name + " in sandbox " + selected + ": " + r.rules.length + " rule(s)."));
      return b;
    }));
  }
  function userState(u) {
    const flags = ["disabled", "locked", "password_expired"].filter((k) => u[k]);
    return flags.length ? h("span", "bad", flags.join(", ")) : "active";
  }
  function renderDirectory(detail) {
    const d = detail.directory;
    if (!changed("directory", [detail.sandbox_id, detail.authority, d])) return;
    $("dir-sandbox").textContent = "sandbox " + detail.sandbox_id;
    const secrets = (a) => a.secrets.length ? h("div", null, ...a.secrets.map((s) => h("div", null, copyable(s.value))))
                                            : h("span", "muted", "none");
    const kind = (a) => (a.public_client ? "public" : a.secrets.length || a.certificates.length ? "confidential"
                         : a.spa_redirect_uris.length ? "spa" : "confidential")
      + (a.spa_redirect_uris.length && (a.public_client || a.secrets.length) ? ", spa" : "")
      + (a.certificates.length ? ", " + a.certificates.length + " cert" : "");
    $("directory").replaceChildren(
      h("p", "kv", "authority ", copyable(detail.authority)),
      h("h3", null, "Tenants"),
      table(["tenant_id", "display_name", "domains"],
            d.tenants.map((t) => [copyable(t.tenant_id), t.display_name, t.domains.join(", ")]), "tenants"),
      h("h3", null, "Apps"),
      table(["display_name", "client_id", "secrets", "kind"],
            d.apps.map((a) => [a.display_name, copyable(a.client_id), secrets(a), kind(a)]), "apps"),
      h("h3", null, "Users"),
      table(["username", "password", "display_name", "type", "state"],
            d.users.map((u) => [copyable(u.username), copyable(u.password), u.display_name, u.account_type,
                                userState(u)]), "users"));
  }

  // --- actions and the poll loop --------------------------------------------------------------------
  async function act(call, describe) {
    const notice = $("notice");
    try {
      notice.textContent = describe(await call());
      notice.className = "";
    } catch (e) {
      notice.textContent = e.message;
      notice.className = "err";
    }
    kick();
  }
  async function refresh() {
    if (!libraryLoaded) {
      renderLibrary((await api("GET", "/scenarios")).scenarios);
      libraryLoaded = true;
    }
    const [list, journal, rules] = await Promise.all([
      api("GET", "/sandboxes"), api("GET", "/journal?" + journalQuery()), api("GET", "/rules")]);
    renderSandboxes(list.sandboxes);
    renderJournal(journal);
    renderRules(rules.sandboxes);
    try {
      renderDirectory(await api("GET", "/sandboxes/" + enc(selected)));
    } catch (e) {
      if (changed("directory", e.message)) $("directory").replaceChildren(h("p", "error", e.message));
    }
  }
  async function tick() {
    clearTimeout(timer);
    if (running) { again = true; return; }
    running = true;
    const status = $("status");
    try {
      if (paused) {
        status.textContent = "paused";
        status.className = "status";
      } else {
        await refresh();
        status.textContent = "live, updated " + new Date().toLocaleTimeString();
        status.className = "status ok";
      }
    } catch (e) {
      status.textContent = e.message;
      status.className = "status err";
    } finally {
      running = false;
      timer = setTimeout(tick, again ? 0 : 1000);
      again = false;
    }
  }
  const kick = () => { clearTimeout(timer); timer = setTimeout(tick, 0); };
  let debounce = 0;
  const soon = () => { clearTimeout(debounce); debounce = setTimeout(kick, 200); };

  $("lib-sandbox").textContent = selected;
  $("sandbox").addEventListener("change", (event) => {
    selected = event.target.value;
    $("lib-sandbox").textContent = selected;
    query.set("sandbox", selected);
    history.replaceState(null, "", "?" + query.toString());
    kick();
  });
  $("filters").addEventListener("input", soon);
  $("filters").addEventListener("change", soon);
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); kick(); });
  $("filters").addEventListener("reset", () => setTimeout(kick, 0));
  $("pause").addEventListener("change", (event) => { paused = event.target.checked; kick(); });
  tick();
})();
"""


def _options(values: tuple[str, ...]) -> str:
    return "".join(f'<option value="{escape(v)}"></option>' for v in values)


_BODY = f"""
<header><div class="banner">{escape(BANNER)}</div><div class="bar"><h1>fakests dashboard</h1>
<label>Sandbox <select id="sandbox" aria-label="Selected sandbox"></select></label>
<span id="sandbox-count" class="muted"></span>
<span id="journal-lost" class="error" role="alert"></span>
<label><input type="checkbox" id="pause"> Pause</label>
<span id="status" class="status" role="status">connecting&hellip;</span></div></header>
<main>
<section class="panel" id="journal-panel"><div class="head"><h2>Requests</h2>
<span id="journal-count" class="muted"></span></div>
<form id="filters" class="filters" autocomplete="off">
<label>sandbox <select id="f-sandbox" name="sandbox"><option value="">all</option></select></label>
<label>client_id <input id="f-client" name="client_id" placeholder="contains" size="16"></label>
<label>endpoint <input id="f-endpoint" name="endpoint" list="endpoints" placeholder="token" size="10"></label>
<label>status <input id="f-status" name="status" list="statuses" placeholder="400, 4xx, failed" size="12"></label>
<label>correlation id <input id="f-correlation" name="correlation_id" placeholder="contains" size="22"></label>
<button type="reset" class="secondary small">Clear filters</button>
<datalist id="endpoints">{_options(ENDPOINTS)}</datalist>
<datalist id="statuses">{_options(("failed", "2xx", "3xx", "4xx", "5xx", "200", "302", "400", "401", "429", "500",
                                   "503"))}</datalist>
</form>
<div class="scroll"><table id="journal"><thead><tr><th>time (UTC)</th><th>sandbox</th><th>method</th>
<th>endpoint</th><th>client_id</th><th>grant_type</th><th>status</th><th>AADSTS</th><th>rule</th><th>fault</th>
<th>correlation id</th><th>duration</th></tr></thead><tbody></tbody></table></div></section>
<div class="cols">
<section class="panel" id="scenarios-panel"><h2>Active scenarios</h2><div id="rules"></div>
<h2>Scenario library <span class="muted">click to arm in sandbox <b id="lib-sandbox"></b></span></h2>
<div id="library" class="library"></div><div id="notice" role="alert"></div></section>
<section class="panel" id="directory-panel"><h2>Directory <span class="muted" id="dir-sandbox"></span></h2>
<div id="directory"></div></section>
</div></main>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>fakests dashboard</title>'
        f"<style>{_STYLE}</style></head><body>{_BODY}<script>{_SCRIPT}</script></body></html>")
# Only this page's own script and style run (by hash); data calls go to this origin only.
CSP = (f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}


# --- endpoints ----------------------------------------------------------------------------------------
async def page(request: Request) -> Response:
    """``GET /dashboard``: the dashboard page (public; its data calls carry ``?token=`` as a Bearer token)."""
    return HTMLResponse(PAGE, headers=HEADERS)


def _status_test(value: str) -> Callable[[int], bool]:
    v = value.strip().lower()
    if v == "failed":
        return lambda status: status >= 400
    if re.fullmatch(r"[1-5]xx", v):
        low = int(v[0]) * 100
        return lambda status: low <= status < low + 100
    if re.fullmatch(r"[0-9]{1,3}", v):
        wanted = int(v)
        return lambda status: status == wanted
    raise AdminError(400, "invalid_request", f"status: must be a status code, a class like 4xx, or 'failed'; "
                                             f"got {value!r}")


def _number(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", value) or not low <= int(value) <= high:
        raise AdminError(400, "invalid_request", f"{name}: must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


async def journal_all(request: Request) -> Response:
    """``GET /journal?sandbox=&endpoint=&client_id=&grant_type=&status=&correlation_id=&since=&limit=``: the
    journal of every sandbox, newest first, at most ``limit`` (default 200, at most 1000) entries, and
    ``matching``: how many matched in all. ``client_id`` and ``correlation_id`` match a part of the value
    (case-insensitive); ``status`` is a code (``400``), a class (``4xx``) or ``failed`` (400 and up)."""
    query = dict(request.query_params)
    for name in query:
        if name not in JOURNAL_QUERY:
            raise AdminError(400, "invalid_request", f"{name}: unknown filter; known: {', '.join(JOURNAL_QUERY)}")
    limit = _number("limit", query["limit"], 1, MAX_LIMIT) if "limit" in query else DEFAULT_LIMIT
    since = _number("since", query["since"], 0, 2**63 - 1) if "since" in query else 0
    status = _status_test(query["status"]) if "status" in query else None
    exact = {name: query[name] for name in ("endpoint", "grant_type") if name in query}
    parts = {name: query[name].lower() for name in ("client_id", "correlation_id") if query.get(name)}

    def keep(e: JournalEntry) -> bool:
        return (e.seq > since and (status is None or status(e.status))
                and all(getattr(e, name) == value for name, value in exact.items())
                and all(value in (getattr(e, name) or "").lower() for name, value in parts.items()))

    sandboxes = sandboxes_of(request).all()
    if "sandbox" in query:
        sandboxes = [sb for sb in sandboxes if sb.sandbox_id == query["sandbox"]]
    matching = [e for sb in sandboxes for e in sb.journal if keep(e)]
    newest = heapq.nlargest(limit, matching, key=lambda e: e.seq)
    return JSONResponse({"entries": [e.to_json() for e in newest], "matching": len(matching), "limit": limit})


async def rules_all(request: Request) -> Response:
    """``GET /rules``: the loaded scenario rules of every sandbox that has some, with their counters."""
    groups = [{"sandbox_id": sb.sandbox_id, "rules": rules}
              for sb in sandboxes_of(request).all() if (rules := sb.engine.summary())]
    return JSONResponse({"sandboxes": groups})


def routes() -> list[BaseRoute]:
    """The dashboard's JSON endpoints, relative to ``/_fakests`` (the page's own route is in ``admin.routes``)."""
    return [
        Route("/journal", admin_endpoint(journal_all), methods=["GET"]),
        Route("/rules", admin_endpoint(rules_all), methods=["GET"]),
    ]
