// Live events: the filtered stream with pause/resume, filter chips, a row
// opens the full event. A filter that fails to compile keeps the old one
// running and shows the error, with its column, under the field.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { S, useStore } from "./store.js";
import { applyFilter, setPaused } from "./stream.js";
import { CATEGORIES, SEVERITIES, fmtTime, sevName } from "./util.js";

const csv = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);

function chips(f) {
  const out = [];
  for (const c of f.categories || []) out.push(["categories", c, `category: ${c}`]);
  for (const t of f.types || []) out.push(["types", t, `type: ${t}`]);
  if (f.min_severity) out.push(["min_severity", f.min_severity, `severity ≥ ${f.min_severity}`]);
  for (const u of f.users || []) out.push(["users", u, `user: ${u}`]);
  for (const ip of f.src_ips || []) out.push(["src_ips", ip, `src_ip: ${ip}`]);
  if (f.expr) out.push(["expr", f.expr, `cel: ${f.expr}`]);
  return out;
}

function without(f, key, value) {
  const n = { ...f };
  if (Array.isArray(n[key])) {
    n[key] = n[key].filter((v) => v !== value);
    if (!n[key].length) delete n[key];
  } else delete n[key];
  return n;
}

export function EventFlyout({ event, onClose }) {
  const e = event;
  const fields = Object.entries(e).filter(([k, v]) => v !== "" && v != null && k !== "data" && typeof v !== "object");
  return html`
    <div class="flyout-backdrop" onClick=${onClose}></div>
    <aside class="flyout" id="event-flyout" role="dialog" aria-label="Event">
      <div class="flyout-head"><h3>Event <span class="mono">${e.id}</span></h3><button class="ghost" id="flyout-close" onClick=${onClose}>✕</button></div>
      <table class="grid compact kvtable"><tbody>
        ${fields.map(([k, v]) => html`<tr><th>${k}</th><td class="mono">${String(v)}</td></tr>`)}
        ${["mitre_tactics", "mitre_techniques", "tags"].filter((k) => e[k]).map((k) => html`<tr><th>${k}</th><td class="mono">${e[k].join(", ")}</td></tr>`)}
      </tbody></table>
      <h4>JSON</h4>
      <pre class="json" id="event-json">${JSON.stringify(e, null, 2)}</pre>
    </aside>`;
}

export function EventsView() {
  const s = useStore();
  const f = s.liveFilter;
  const [form, setForm] = useState(() => ({
    categories: (f.categories || []).join(","), types: (f.types || []).join(","), min_severity: f.min_severity || "",
    users: (f.users || []).join(","), src_ips: (f.src_ips || []).join(","), expr: f.expr || "",
  }));
  const [open, setOpen] = useState(null);
  const upd = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const submit = (ev) => {
    ev.preventDefault();
    const n = {};
    for (const k of ["categories", "types", "users", "src_ips"]) { const v = csv(form[k]); if (v.length) n[k] = v; }
    if (form.min_severity) n.min_severity = form.min_severity;
    if (form.expr.trim()) n.expr = form.expr.trim();
    applyFilter(n);
  };
  const removeChip = (key, value) => {
    const n = without(f, key, value);
    setForm({ ...form, [key]: Array.isArray(n[key]) ? n[key].join(",") : (n[key] || "") });
    applyFilter(n);
  };
  const fe = s.filterError;
  const rows = s.events;
  return html`
    <section class="view" id="events-view">
      <form id="filter-form" class="filterbar" onSubmit=${submit}>
        <label>category<select id="f-categories" value=${form.categories} onChange=${upd("categories")}>
          <option value="">any</option>${CATEGORIES.map((c) => html`<option value=${c}>${c}</option>`)}</select></label>
        <label>type<input id="f-types" placeholder="security.fraud.*" value=${form.types} onInput=${upd("types")} /></label>
        <label>min severity<select id="f-min-severity" value=${form.min_severity} onChange=${upd("min_severity")}>
          <option value="">any</option>${[...SEVERITIES].reverse().map((v) => html`<option value=${v}>${v}</option>`)}</select></label>
        <label>user<input id="f-users" placeholder="alice@example.com" value=${form.users} onInput=${upd("users")} /></label>
        <label>src_ip / CIDR<input id="f-src-ips" placeholder="203.0.113.0/24" value=${form.src_ips} onInput=${upd("src_ips")} /></label>
        <label class="expr">CEL expression
          <input id="f-expr" class=${fe ? "invalid mono" : "mono"} placeholder='risk_score > 70 && user.endsWith("@example.com")' value=${form.expr} onInput=${upd("expr")} spellcheck="false" />
          ${fe && html`<div class="celerr" id="filter-error" role="alert">
            ${fe.column ? html`<pre class="caret">${fe.expr + "\n" + " ".repeat(Math.max(fe.column - 1, 0)) + "^"}</pre>` : ""}
            <span>${fe.column ? `column ${fe.column}: ` : ""}${fe.message}</span>
            <span class="dim"> — the previous filter is still running</span></div>`}
        </label>
        <button type="submit" class="primary">Apply</button>
      </form>
      <div class="toolbar">
        <button id="ev-pause" class=${s.paused ? "primary" : ""} onClick=${() => setPaused(!s.paused)}>${s.paused ? "▶ Resume" : "❚❚ Pause"}</button>
        ${s.paused && html`<span class="muted" id="ev-pending">${s.pending.length} new while paused</span>`}
        <span id="chips" class="chips">${chips(f).map(([k, v, t]) => html`<span class="chip" data-key=${k}>${t}
          <button class="x" title="remove" onClick=${() => removeChip(k, v)}>×</button></span>`)}
          ${chips(f).length === 0 && html`<span class="muted">no filter: every event you may read</span>`}</span>
        <span class="grow"></span>
        <span class="muted"><span id="event-count">${rows.length}</span> shown · ${s.received} received</span>
      </div>
      <div class="tablewrap">
      <table class="grid" id="events-table">
        <thead><tr><th>seq</th><th>time</th><th>sev</th><th>category</th><th>type</th><th>user</th><th>src_ip</th><th>message</th></tr></thead>
        <tbody id="events">
          ${rows.slice(0, 300).map((e) => html`
            <tr data-seq=${e.seq} data-id=${e.id} onClick=${() => setOpen(e)}>
              <td class="num dim">${e.seq}</td><td class="nowrap">${fmtTime(e.time)}</td>
              <td><span class=${"sev sev-" + sevName(e.severity)}>${sevName(e.severity)}</span></td>
              <td>${e.category}</td><td class="mono">${e.type}</td><td>${e.user}</td><td class="mono">${e.src_ip}</td>
              <td class="ellipsis">${e.message}</td></tr>`)}
        </tbody>
      </table>
      ${rows.length === 0 && html`<p class="empty">${s.conn === "live" ? "Waiting for events matching the filter…" : "Not connected."}</p>`}
      </div>
      ${open && html`<${EventFlyout} event=${open} onClose=${() => setOpen(null)} />`}
    </section>`;
}
