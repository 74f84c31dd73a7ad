// Vigil dashboard: one native WebSocket connection with two subscriptions
// (the filtered live stream, and detection changes), plus the detections
// REST API. Reconnects resume from the last seq seen, so nothing is missed.
"use strict";

const CATEGORIES = ["authentication", "authorization", "audit", "encryption", "rate_limit", "insider_threat",
  "memory", "circuit_breaker", "analysis", "threat_intel", "fraud", "response", "orchestration", "detection", "system"];
const COLORS = ["#5fb3f9", "#f0c674", "#b5bd68", "#cc6666", "#b294bb", "#8abeb7", "#de935f", "#81a2be",
  "#e6a5c8", "#a3be8c", "#f08c5a", "#88c0d0", "#ebcb8b", "#ff5555", "#9aa5b1"];
const MAX_ROWS = 500;
const $ = (sel) => document.querySelector(sel);

const state = {
  token: sessionStorage.getItem("vigil.token") || "",
  ws: null,
  liveSub: "live-1",
  filter: {},
  last: {},            // sub id -> last seq delivered
  counts: Object.fromEntries(CATEGORIES.map((c) => [c, 0])),
  buckets: [],         // [{t: second, c: {category: n}}]
  detections: new Map(),
  retry: null,
  total: 0,
};

function csv(v) { return v.split(",").map((s) => s.trim()).filter(Boolean); }

function readFilter() {
  const f = {};
  const cats = csv($("#f-categories").value); if (cats.length) f.categories = cats;
  const types = csv($("#f-types").value); if (types.length) f.types = types;
  const sev = $("#f-min-severity").value; if (sev) f.min_severity = sev;
  const users = csv($("#f-users").value); if (users.length) f.users = users;
  const ips = csv($("#f-src-ips").value); if (ips.length) f.src_ips = ips;
  const expr = $("#f-expr").value.trim(); if (expr) f.expr = expr;
  return f;
}

function setStatus(on, text) {
  const el = $("#status");
  el.textContent = text;
  el.className = "status " + (on ? "on" : "off");
}

function send(msg) { if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg)); }

function from(sub) { return state.last[sub] ? { seq: state.last[sub] + 1 } : "latest"; }

function connect() {
  if (!state.token) { setStatus(false, "enter a token"); return; }
  clearTimeout(state.retry);
  if (state.ws) { state.ws.onclose = null; state.ws.close(); }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/stream?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => {
    setStatus(true, "live");
    send({ op: "subscribe", id: state.liveSub, filter: state.filter, from: from(state.liveSub) });
    send({ op: "subscribe", id: "detections", filter: { categories: ["detection"] }, from: from("detections") });
    loadDetections();
    loadCoverage();
  };
  ws.onmessage = (m) => onMessage(JSON.parse(m.data));
  ws.onclose = (ev) => {
    setStatus(false, `disconnected (${ev.code}); retrying`);
    if (ev.code === 1008 || ev.code === 4001) { setStatus(false, "token refused"); return; }
    state.retry = setTimeout(connect, 1500);
  };
}

function onMessage(msg) {
  switch (msg.type) {
    case "event":
      state.last[msg.sub] = msg.event.seq;
      if (msg.sub === "detections") onDetectionEvent(msg.event);
      if (msg.sub === state.liveSub) onEvent(msg.event);
      break;
    case "error":
      $("#filter-error").textContent = `${msg.code}: ${msg.message}`;
      break;
    case "subscribed":
      if (msg.id === state.liveSub) $("#filter-error").textContent = "";
      break;
    case "lagged":
      state.last[msg.id] = msg.resume_from - 1; // reconnect resumes there
      break;
  }
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text || "";
  if (cls) td.className = cls;
  return td;
}

function onEvent(e) {
  const tr = document.createElement("tr");
  tr.dataset.seq = e.seq;
  tr.dataset.category = e.category;
  tr.append(cell(e.seq), cell((e.time || "").replace("T", " ").slice(0, 19)), cell(e.severity, "sev-" + e.severity),
    cell(e.category), cell(e.type), cell(e.user), cell(e.src_ip), cell(e.message));
  const body = $("#events");
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
  state.total++;
  $("#event-count").textContent = state.total;
  if (e.category in state.counts) state.counts[e.category]++;
  const sec = Math.floor(Date.now() / 1000);
  let b = state.buckets[state.buckets.length - 1];
  if (!b || b.t !== sec) { b = { t: sec, c: {} }; state.buckets.push(b); }
  b.c[e.category] = (b.c[e.category] || 0) + 1;
}

function renderCounters() {
  const grid = $("#counter-grid");
  grid.replaceChildren(...CATEGORIES.map((c, i) => {
    const d = document.createElement("div");
    d.className = "counter";
    d.dataset.category = c;
    d.style.borderLeft = `3px solid ${COLORS[i]}`;
    const b = document.createElement("b");
    b.textContent = state.counts[c];
    d.append(b, document.createTextNode(c));
    return d;
  }));
}

function renderChart() {
  const canvas = $("#rate-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const now = Math.floor(Date.now() / 1000);
  state.buckets = state.buckets.filter((b) => b.t > now - 60);
  const series = CATEGORIES.map((c) => {
    const pts = new Array(60).fill(0);
    for (const b of state.buckets) { const i = 59 - (now - b.t); if (i >= 0 && i < 60) pts[i] = b.c[c] || 0; }
    return pts;
  });
  const max = Math.max(1, ...series.flat());
  series.forEach((pts, ci) => {
    if (!pts.some((v) => v > 0)) return;
    ctx.strokeStyle = COLORS[ci];
    ctx.beginPath();
    pts.forEach((v, i) => { const x = (i / 59) * w, y = h - (v / max) * (h - 10) - 2; i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
  });
  ctx.fillStyle = "#8a94a8";
  ctx.fillText(`max ${max}/s`, 4, 12);
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

async function loadDetections() {
  try {
    const data = await api("GET", "/api/v1/detections?limit=200");
    const list = Array.isArray(data) ? data : (data.detections || []);
    for (const d of list) state.detections.set(d.id, d);
    renderDetections();
    $("#detection-error").textContent = "";
  } catch (err) {
    $("#detection-error").textContent = "detections: " + err.message;
  }
}

function onDetectionEvent(e) {
  let d = e.data;
  if (typeof d === "string") { try { d = JSON.parse(d); } catch { return; } }
  if (!d || !d.id) return;
  state.detections.set(d.id, { ...(state.detections.get(d.id) || {}), ...d });
  renderDetections();
  // The matrix marks fired techniques: refresh it, at most every 2 s.
  if (!state.coverageTimer) state.coverageTimer = setTimeout(() => { state.coverageTimer = null; loadCoverage(); }, 2000);
}

// ATT&CK coverage (issue 13): GET /api/v1/attack/coverage, drawn as one
// column per tactic with the techniques loaded rules cover (blue) or that
// fired (red); the tooltip names the rules and detections.
async function loadCoverage() {
  try {
    const c = await api("GET", "/api/v1/attack/coverage");
    $("#attack-summary").textContent = `ATT&CK ${c.attack_version}: ${c.covered} of ${c.total_techniques} techniques covered, ${c.fired} fired`;
    const cols = (c.tactics || []).map((ta) => {
      const col = document.createElement("div");
      col.dataset.tactic = ta.id;
      const h = document.createElement("h3");
      h.textContent = ta.name;
      col.append(h);
      return col;
    });
    const byTactic = new Map(cols.map((col) => [col.dataset.tactic, col]));
    for (const t of c.techniques || []) {
      for (const ta of t.tactics || []) {
        const col = byTactic.get(ta);
        if (!col) continue;
        const el = document.createElement("div");
        el.className = "tech" + (t.detections > 0 ? " fired" : "");
        el.dataset.id = t.technique_id;
        el.textContent = `${t.technique_id} ${t.name}`;
        el.title = `${(t.rules || []).length} rule(s): ${(t.rules || []).join(", ")}` + (t.detections > 0 ? `; ${t.detections} detection(s)` : "");
        col.append(el);
      }
    }
    $("#attack-matrix").replaceChildren(...cols);
    $("#attack-error").textContent = "";
  } catch (err) {
    $("#attack-error").textContent = "coverage: " + err.message;
  }
}

const NEXT = {
  active: ["investigating", "resolved", "false_positive"],
  investigating: ["resolved", "false_positive"],
  resolved: ["reopen"],
  false_positive: ["reopen"],
};

function renderDetections() {
  for (const col of document.querySelectorAll(".column")) col.querySelector("ul").replaceChildren();
  const sorted = [...state.detections.values()].sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""));
  for (const d of sorted) {
    const col = document.querySelector(`.column[data-status="${d.status}"] ul`);
    if (!col) continue;
    const li = document.createElement("li");
    li.dataset.id = d.id;
    const title = document.createElement("div");
    title.innerHTML = "";
    const strong = document.createElement("strong");
    strong.textContent = d.title || d.rule_id;
    title.append(strong, document.createTextNode(` ×${d.count || 1}`));
    const meta = document.createElement("div");
    meta.className = "sev-" + d.severity;
    meta.textContent = `${d.severity} · ${(d.mitre_techniques || []).join(",")} · ${d.group_key || ""}`;
    const actions = document.createElement("div");
    actions.className = "actions";
    for (const next of NEXT[d.status] || []) {
      const b = document.createElement("button");
      b.textContent = next.replace("_", " ");
      b.dataset.action = next;
      b.onclick = async () => {
        try { const upd = await api("PATCH", `/api/v1/detections/${d.id}`, { status: next }); onDetectionEvent({ data: upd.detection || upd }); }
        catch (err) { $("#detection-error").textContent = err.message; }
      };
      actions.append(b);
    }
    li.append(title, meta, actions);
    col.append(li);
  }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("vigil.token", state.token);
  connect();
});

$("#filter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  send({ op: "unsubscribe", id: state.liveSub });
  state.filter = readFilter();
  state.liveSub = "live-" + (Number(state.liveSub.split("-")[1]) + 1);
  send({ op: "subscribe", id: state.liveSub, filter: state.filter, from: "latest" });
});

setInterval(() => { renderCounters(); renderChart(); }, 1000);
renderCounters();
if (state.token) { $("#token").value = state.token; connect(); }
