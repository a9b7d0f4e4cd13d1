// The monitor page's code: one EventSource on /api/events carries a full
// page of the status each time (never a diff, so a reconnect or a skipped
// event needs nothing special). Search and paging are done by the server
// (?q=, ?hosts_page=...), so 100,000 users never reach the browser at once.
// Everything user-chosen (names) goes in through textContent, never HTML.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const state = { q: params.get("q") || "", hosts: 0, users: 0, attachments: 0, size: 50 };
let source = null;
let last = null;

function apiUrl(path, extra) {
  const p = new URLSearchParams(extra || {});
  if (token) p.set("token", token);
  const s = p.toString();
  return path + (s ? "?" + s : "");
}

function pageParams() {
  return {
    q: state.q, size: state.size,
    hosts_page: state.hosts, users_page: state.users, attachments_page: state.attachments,
  };
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k === "id" || k === "title") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const short = (hex) => (hex || "").slice(0, 12);
const badge = (online, text) => el("span", { class: "badge " + (online ? "on" : "off") }, text || (online ? "online" : "offline"));

function idLink(kind, id, label) {
  const a = el("span", { class: "id", title: id }, label || short(id));
  a.addEventListener("click", () => inspect(kind, id));
  return a;
}

function ago(ms, now) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function hostsList(ids) {
  const span = el("span", {});
  ids.forEach((h, i) => { if (i) span.append(" "); span.append(idLink("host", h)); });
  return span;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

function pager(list, page) {
  const span = document.querySelector('.pager[data-list="' + list + '"]');
  const prev = el("button", { type: "button", disabled: page.page <= 0 }, "‹");
  const next = el("button", { type: "button", disabled: page.page >= page.pages - 1 }, "›");
  prev.addEventListener("click", () => { state[list] = page.page - 1; connect(); });
  next.addEventListener("click", () => { state[list] = page.page + 1; connect(); });
  span.replaceChildren(
    el("span", { class: "muted" }, page.total + (state.q ? " matching" : "") + ", page " + (page.page + 1) + " of " + page.pages),
    prev, next);
}

// With ?bench (`dem bench monitor`), the page reports when the first
// frame after its first snapshot was drawn, and its first contentful paint.
const bench = params.has("bench");
let painted = false;

function reportPaint() {
  if (!bench || painted) return;
  painted = true;
  requestAnimationFrame(() => setTimeout(() => {
    const fcp = performance.getEntriesByName("first-contentful-paint")[0];
    console.info("dem-bench first-data-paint " + performance.now().toFixed(1) + " fcp " + (fcp ? fcp.startTime : -1).toFixed(1));
  }, 0));
}

function render(v) {
  last = v;
  const s = v.summary;
  document.getElementById("unit").textContent = "answering unit " + short(v.unit);
  document.getElementById("updated").textContent = "updated " + new Date(v.now_ms).toLocaleTimeString();
  const card = (label, value) => el("div", { class: "card" }, el("b", {}, value), label);
  document.getElementById("summary").replaceChildren(
    card("dispatch units", s.units),
    card("hosts online", s.hosts_online + " / " + s.hosts_known),
    card("users online", s.users_online),
    card("users offline", s.users_offline),
    card("mailboxes", s.mailboxes),
    card("attachments", s.attachments));

  fill("units", v.units.map((u) => el("tr", { id: "unit-" + u.id },
    el("td", {}, idLink("unit", u.id)), el("td", {}, el("code", {}, u.addr)),
    el("td", {}, ago(u.seen_ms, v.now_ms)), el("td", {}, u.is_self ? "answering" : ""))));

  fill("hosts", v.hosts.items.map((h) => {
    const pct = h.capacity ? Math.min(100, Math.round(100 * h.load / h.capacity)) : 0;
    const status = h.state === "active" ? badge(h.online)
      : el("span", { class: "badge " + (h.state === "leaving" ? "leaving" : "off") }, h.online ? h.state : "offline (" + h.state + ")");
    const names = h.mailboxes.join(", ") + (h.mailbox_count > h.mailboxes.length ? " … (" + h.mailbox_count + ")" : "");
    return el("tr", { id: "host-" + h.id, "data-online": String(h.online), "data-mailboxes": h.mailboxes.join(" ") },
      el("td", {}, idLink("host", h.id)), el("td", {}, el("code", {}, h.addr)), el("td", { class: "status" }, status),
      el("td", {}, el("span", { class: "bar" }, el("i", { style: "width:" + pct + "%" })), h.load + " / " + h.capacity),
      el("td", {}, h.online ? Math.max(0, Math.round((h.lease_expires_ms - v.now_ms) / 100) / 10) + " s" : "—"),
      el("td", {}, names || "—"), el("td", {}, h.attachments));
  }));
  pager("hosts", v.hosts);

  fill("users", v.users.items.map((u) => {
    const name = u.name || u.user;
    return el("tr", { id: "user-" + name, "data-online": String(u.online), "data-hosts": u.hosts.join(" ") },
      el("td", {}, idLink("mailbox", name, name)), el("td", {}, badge(u.online)),
      el("td", {}, u.home ? idLink("host", u.home) : "—"), el("td", {}, hostsList(u.hosts)),
      syncCell(u), el("td", {}, u.epoch));
  }));
  pager("users", v.users);

  fill("attachments", v.attachments.items.map((a) => el("tr", { id: "attachment-" + a.id, "data-hosts": a.hosts.join(" ") },
    el("td", {}, idLink("attachment", a.id)), el("td", {}, a.size_bytes + " B"),
    el("td", {}, hostsList(a.hosts)), el("td", {}, a.epoch))));
  pager("attachments", v.attachments);
  reportPaint();
}

function setConn(ok, text) {
  const c = document.getElementById("conn");
  c.className = "badge " + (ok ? "on" : "off");
  c.dataset.state = ok ? "live" : "down";
  c.textContent = text;
}

function connect() {
  if (source) source.close();
  source = new EventSource(apiUrl("api/events", pageParams()));
  source.addEventListener("snapshot", (e) => { setConn(true, "live"); render(JSON.parse(e.data)); });
  // EventSource reconnects by itself; the first event after is a full page.
  source.onerror = () => setConn(false, "reconnecting");
}

async function inspect(kind, id) {
  const panel = document.getElementById("inspect");
  const body = document.getElementById("inspect-body");
  panel.hidden = false;
  body.textContent = "…";
  try {
    const r = await fetch(apiUrl("api/inspect/" + kind + "/" + encodeURIComponent(id)));
    const found = await r.json();
    body.textContent = JSON.stringify(found, null, 2);
    if (kind === "mailbox" && r.ok) {
      // What the holders themselves report: their version vectors.
      const rr = await fetch(apiUrl("api/replicas/" + encodeURIComponent(id)));
      found.replicas_reported = await rr.json();
      body.textContent = JSON.stringify(found, null, 2);
    }
  } catch (e) {
    body.textContent = String(e);
  }
}

// Whether each mailbox's replicas are in sync: /api/sync asks every host
// for its replicas' vectors and digests, which wakes their mailboxes, so
// the page asks on load and then every SYNC_POLL_MS, apart from the event
// stream; rows show the latest answer.
const SYNC_POLL_MS = 30000;
const sync = { unsynced: new Map(), report: null };

function syncCell(u) {
  if (!sync.report) return el("td", { class: "muted" }, "…");
  const why = sync.unsynced.get(u.user);
  if (why === undefined && u.hosts.length) return el("td", { "data-in-sync": "true" }, badge(true, "in sync"));
  return el("td", { "data-in-sync": "false", title: why || "" }, badge(false, why || "no mailbox"));
}

async function pollSync() {
  try {
    const r = await fetch(apiUrl("api/sync"));
    if (r.ok) {
      const report = await r.json();
      sync.report = report;
      sync.unsynced = new Map(report.unsynced.map((u) => [u.user, u.reason]));
      document.getElementById("summary").dataset.inSync = report.in_sync + "/" + report.mailboxes;
      if (last) render(last);
    }
  } catch (e) { /* the next poll tries again */ }
  setTimeout(pollSync, SYNC_POLL_MS);
}

// The collected log: polled by cursor (`after`), so nothing is fetched
// twice and the page never asks for a backlog; it keeps the newest
// LOG_ROWS rows. The text filter and "moves only" work on what is shown.
const LOG_ROWS = 500;
const MOVES = /moved|move|replica set changed|regenerat|rebalanc|drain|leav/i;
const logState = { after: null, rows: [], text: "", moves: false };

function logFilterParams() {
  const p = { level: document.getElementById("log-level").value, limit: 200 };
  const c = document.getElementById("log-component").value.trim().toLowerCase();
  if (/^[0-9a-f]+$/.test(c)) p.component = c;
  if (logState.after !== null) p.after = logState.after;
  return p;
}

// Units and hosts both have 64-hex ids: the latest status tells them apart.
const isUnit = (id) => !!(last && last.units.some((u) => u.id === id));

function logRow(ev) {
  const fields = ev.fields.map(([k, v]) => k + "=" + v).join(" ");
  const text = ev.message + (fields ? "  " + fields : "");
  return el("tr", { id: "log-" + ev.seq, "data-component": ev.component, "data-level": ev.level, class: "lvl-" + ev.level },
    el("td", {}, new Date(ev.ts_ms).toLocaleTimeString()), el("td", {}, ev.level),
    el("td", {}, idLink(isUnit(ev.component) ? "unit" : "host", ev.component)), el("td", {}, text));
}

function renderLog() {
  const shown = logState.rows.filter((r) => {
    const t = r.lastChild.textContent;
    return (!logState.moves || MOVES.test(t)) && (!logState.text || t.toLowerCase().includes(logState.text));
  });
  fill("log", shown.slice().reverse());
  document.getElementById("log-state").textContent = shown.length + " shown of the latest " + logState.rows.length;
}

async function pollLog() {
  try {
    const r = await fetch(apiUrl("api/logs", logFilterParams()));
    if (r.ok) {
      const page = await r.json();
      logState.after = page.next;
      if (page.events.length) {
        logState.rows.push(...page.events.map(logRow));
        if (logState.rows.length > LOG_ROWS) logState.rows.splice(0, logState.rows.length - LOG_ROWS);
        renderLog();
      }
    }
  } catch (e) { /* the next poll tries again */ }
  setTimeout(pollLog, 1000);
}

function restartLog() {
  logState.after = null;
  logState.rows = [];
  renderLog();
}

document.getElementById("log-level").addEventListener("change", restartLog);
document.getElementById("log-component").addEventListener("change", restartLog);
document.getElementById("log-text").addEventListener("input", (e) => { logState.text = e.target.value.trim().toLowerCase(); renderLog(); });
document.getElementById("log-moves").addEventListener("click", () => { logState.moves = !logState.moves; renderLog(); });
document.getElementById("log-clear").addEventListener("click", () => {
  logState.moves = false; logState.text = "";
  document.getElementById("log-text").value = "";
  document.getElementById("log-component").value = "";
  restartLog();
});
pollSync();
pollLog();

document.getElementById("inspect-close").addEventListener("click", () => { document.getElementById("inspect").hidden = true; });
let searchTimer = null;
const search = document.getElementById("search");
search.value = state.q;
search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.q = search.value.trim().slice(0, 200);
    state.hosts = state.users = state.attachments = 0;
    connect();
  }, 300);
});
connect();
