// The detections table: what an analyst works. Sort, filter, search,
// status tabs with counts, bulk assign / status change on a selection.
import { useState } from "preact/hooks";
import { html } from "./html.js";
import { S, set, useStore, reportError } from "./store.js";
import { api } from "./api.js";
import { SEV_RANK, SEVERITIES, STATUSES, label, ago, fmtTime, nextStatuses } from "./util.js";
import { withName, attackName } from "./attack.js";

export async function loadDetections() {
  try {
    const data = await api("GET", "/api/v1/detections?limit=1000");
    for (const d of data.detections || []) S.detections.set(d.id, d);
    set({ detLoaded: true, detError: "" });
  } catch (err) {
    set({ detLoaded: true, detError: err.message });
  }
}

export async function patchDetection(id, body) {
  const d = await api("PATCH", `/api/v1/detections/${encodeURIComponent(id)}`, body);
  S.detections.set(d.id, d);
  set();
  return d;
}

export const canEdit = () => !!(S.me && S.me.can_update_detections);

const COLUMNS = [
  ["severity", "Sev", (d) => SEV_RANK[d.severity] || 0],
  ["title", "Detection", (d) => (d.title || d.rule_id || "").toLowerCase()],
  ["rule_id", "Rule", (d) => d.rule_id || ""],
  ["mitre", "ATT&CK", (d) => (d.mitre_techniques || []).join(",")],
  ["group_key", "Group", (d) => d.group_key || ""],
  ["count", "Count", (d) => d.count || 0],
  ["assignee", "Assignee", (d) => d.assignee || ""],
  ["status", "Status", (d) => STATUSES.indexOf(d.status)],
  ["last_seen", "Last seen", (d) => d.last_seen || d.updated_at || ""],
];

export function matches(d, q, ignoreStatus) {
  if (!ignoreStatus && q.status !== "all" && d.status !== q.status) return false;
  if (q.severity && d.severity !== q.severity) return false;
  if (q.tactic && !(d.mitre_tactics || []).includes(q.tactic)) return false;
  if (q.technique && !(d.mitre_techniques || []).some((t) => t === q.technique || t.startsWith(q.technique + "."))) return false;
  if (q.assignee === "-" ? d.assignee : q.assignee && d.assignee !== q.assignee) return false;
  if (q.q) {
    const hay = `${d.title} ${d.rule_id} ${d.group_key} ${d.id}`.toLowerCase();
    if (!q.q.toLowerCase().split(/\s+/).every((w) => hay.includes(w))) return false;
  }
  return true;
}

function setQuery(patch) {
  set({ detQuery: { ...S.detQuery, ...patch } });
}

export function SevBadge({ sev }) {
  return html`<span class=${"sev sev-" + sev}>${sev}</span>`;
}

export function StatusBadge({ status }) {
  return html`<span class=${"status st-" + status}>${label(status)}</span>`;
}

export function DetectionsView() {
  const s = useStore();
  const q = s.detQuery;
  const [sel, setSel] = useState(new Set());
  const [bulkAssignee, setBulkAssignee] = useState("");
  const [busy, setBusy] = useState(false);
  const all = [...s.detections.values()];
  const counts = { all: 0 };
  for (const st of STATUSES) counts[st] = 0;
  for (const d of all) {
    if (!matches(d, q, true)) continue;
    counts.all++;
    counts[d.status] = (counts[d.status] || 0) + 1;
  }
  const col = COLUMNS.find((c) => c[0] === q.sort) || COLUMNS[0];
  const rows = all.filter((d) => matches(d, q)).sort((a, b) => {
    const x = col[2](a), y = col[2](b);
    if (x < y) return -q.dir;
    if (x > y) return q.dir;
    return (b.last_seen || "").localeCompare(a.last_seen || "");
  });
  const tactics = [...new Set(all.flatMap((d) => d.mitre_tactics || []))].sort();
  const assignees = [...new Set(all.map((d) => d.assignee).filter(Boolean))].sort();
  const visibleSel = rows.filter((d) => sel.has(d.id));
  const sortBy = (key) => setQuery(q.sort === key ? { dir: -q.dir } : { sort: key, dir: key === "title" || key === "rule_id" ? 1 : -1 });
  const toggle = (id) => { const n = new Set(sel); n.has(id) ? n.delete(id) : n.add(id); setSel(n); };
  const toggleAll = () => setSel(visibleSel.length === rows.length ? new Set() : new Set(rows.map((d) => d.id)));
  const bulk = async (body) => {
    setBusy(true);
    const failed = [];
    for (const d of visibleSel) {
      try { await patchDetection(d.id, body); } catch (err) { failed.push(`${d.id}: ${err.message}`); }
    }
    setBusy(false);
    if (failed.length) reportError(`bulk update (${failed.length} of ${visibleSel.length} failed)`, failed.slice(0, 3).join("; "));
    else setSel(new Set());
  };
  const bulkStatuses = STATUSES.filter((st) => visibleSel.some((d) => nextStatuses(d.status).includes(st)));
  if (visibleSel.some((d) => d.status === "resolved" || d.status === "false_positive")) bulkStatuses.push("reopen");
  const edit = canEdit();
  return html`
    <section class="view" id="detections-view">
      <div class="tabs" id="det-tabs" role="tablist">
        ${["all", ...STATUSES].map((st) => html`
          <button role="tab" data-status=${st} class=${q.status === st ? "on" : ""} onClick=${() => setQuery({ status: st })}>
            ${st === "all" ? "All" : label(st)} <span class="count">${counts[st] || 0}</span></button>`)}
      </div>
      <div class="toolbar">
        <input id="det-search" type="search" placeholder="Search title, rule, group key, id" value=${q.q}
          onInput=${(e) => setQuery({ q: e.target.value })} />
        <select id="det-severity" value=${q.severity} onChange=${(e) => setQuery({ severity: e.target.value })}>
          <option value="">any severity</option>${SEVERITIES.map((v) => html`<option value=${v}>${v}</option>`)}</select>
        <select id="det-tactic" value=${q.tactic} onChange=${(e) => setQuery({ tactic: e.target.value })}>
          <option value="">any tactic</option>${tactics.map((t) => html`<option value=${t}>${withName(t)}</option>`)}</select>
        <select id="det-assignee" value=${q.assignee} onChange=${(e) => setQuery({ assignee: e.target.value })}>
          <option value="">any assignee</option><option value="-">unassigned</option>
          ${assignees.map((a) => html`<option value=${a}>${a}</option>`)}</select>
        ${q.technique && html`<span class="chip" id="det-technique-chip">${withName(q.technique)}
          <button class="x" title="clear" onClick=${() => setQuery({ technique: "" })}>×</button></span>`}
        <span class="grow"></span>
        <span class="muted">${rows.length} of ${all.length}</span>
      </div>
      ${edit && visibleSel.length > 0 && html`
        <div class="bulkbar" id="bulk">
          <b>${visibleSel.length} selected</b>
          <input id="bulk-assignee" placeholder="assignee" value=${bulkAssignee} onInput=${(e) => setBulkAssignee(e.target.value)} />
          <button id="bulk-assign" disabled=${busy} onClick=${() => bulk({ assignee: bulkAssignee.trim() })}>Assign</button>
          <span class="sep"></span>
          ${bulkStatuses.map((st) => html`<button data-bulk-status=${st} disabled=${busy} onClick=${() => bulk({ status: st })}>${label(st)}</button>`)}
          <button class="ghost" onClick=${() => setSel(new Set())}>clear selection</button>
        </div>`}
      ${s.detError && html`<p class="error" id="detection-error" role="alert">detections: ${s.detError}</p>`}
      <div class="tablewrap">
      <table class="grid" id="det-table">
        <thead><tr>
          ${edit && html`<th class="cb"><input type="checkbox" aria-label="select all" checked=${rows.length > 0 && visibleSel.length === rows.length} onChange=${toggleAll} /></th>`}
          ${COLUMNS.map(([key, title]) => html`<th class=${"sortable " + key} data-sort=${key} onClick=${() => sortBy(key)}>
            ${title}${q.sort === key ? (q.dir > 0 ? " ▲" : " ▼") : ""}</th>`)}
        </tr></thead>
        <tbody>
          ${rows.slice(0, 500).map((d) => html`
            <tr data-id=${d.id} data-rule=${d.rule_id} data-status=${d.status} class=${sel.has(d.id) ? "selected" : ""}
              onClick=${(e) => { if (e.target.type !== "checkbox") location.hash = `#/detections/${encodeURIComponent(d.id)}`; }}>
              ${edit && html`<td class="cb"><input type="checkbox" checked=${sel.has(d.id)} onChange=${() => toggle(d.id)} /></td>`}
              <td><${SevBadge} sev=${d.severity} /></td>
              <td class="title"><a href=${"#/detections/" + encodeURIComponent(d.id)}>${d.title || d.rule_id}</a></td>
              <td class="mono dim">${d.rule_id}</td>
              <td class="mono">${(d.mitre_techniques || []).map((t) => html`<span class="tech" title=${attackName(t)}>${t}</span>`)}</td>
              <td class="mono ellipsis" title=${d.group_key}>${d.group_key}</td>
              <td class="num">${d.count}</td>
              <td>${d.assignee || html`<span class="dim">—</span>`}</td>
              <td><${StatusBadge} status=${d.status} /></td>
              <td class="nowrap" title=${fmtTime(d.last_seen)}>${ago(d.last_seen || d.updated_at)}</td>
            </tr>`)}
        </tbody>
      </table>
      ${rows.length === 0 && html`<p class="empty">${s.detLoaded ? (all.length ? "No detection matches these filters." : "No detections yet. They appear here as rules fire.") : "Loading…"}</p>`}
      ${rows.length > 500 && html`<p class="muted">Showing the first 500 of ${rows.length}; narrow the filters.</p>`}
      </div>
    </section>`;
}
