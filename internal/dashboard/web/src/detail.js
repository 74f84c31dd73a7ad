// One detection at #/detections/<id>: everything about it, the analyst's
// fields (assignee, notes, status with the allowed transitions), its
// history and its contributing events, fetched by id over REST.
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import { S, set, useStore } from "./store.js";
import { api } from "./api.js";
import { fmtTime, label, nextStatuses, sevName } from "./util.js";
import { attackName } from "./attack.js";
import { patchDetection, canEdit, SevBadge, StatusBadge } from "./detections.js";
import { EventFlyout } from "./events.js";

const MAX_EVENTS = 100; // newest contributing events fetched (each is one GET)

async function fetchEvents(ids) {
  const out = new Array(ids.length);
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const i = next++;
      try { out[i] = await api("GET", `/api/v1/events/${encodeURIComponent(ids[i])}`); }
      catch (err) { out[i] = { id: ids[i], _error: err.message }; }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return out;
}

export function DetectionDetail({ id }) {
  const s = useStore();
  const d = s.detections.get(id);
  const [err, setErr] = useState("");
  const [events, setEvents] = useState(null);
  const [open, setOpen] = useState(null);
  const [assignee, setAssignee] = useState(null);
  const [notes, setNotes] = useState(null);
  const [saving, setSaving] = useState("");

  useEffect(() => {
    let live = true;
    api("GET", `/api/v1/detections/${encodeURIComponent(id)}`)
      .then((fresh) => { S.detections.set(fresh.id, fresh); set(); setErr(""); })
      .catch((e) => live && setErr(e.message));
    return () => { live = false; };
  }, [id]);

  const idsKey = d ? (d.event_ids || []).join(",") : "";
  useEffect(() => {
    if (!d) return;
    let live = true;
    const ids = (d.event_ids || []).slice(-MAX_EVENTS);
    fetchEvents(ids).then((evs) => {
      if (!live) return;
      evs.sort((a, b) => (a.time || "").localeCompare(b.time || ""));
      setEvents(evs);
    });
    return () => { live = false; };
  }, [idsKey]);

  if (!d) {
    return html`<section class="view"><a href="#/detections" class="back">← Detections</a>
      ${err ? html`<p class="error" role="alert" id="detail-error">detection ${id}: ${err}</p>` : html`<p class="muted">Loading…</p>`}</section>`;
  }
  const edit = canEdit();
  const save = async (what, body) => {
    setSaving(what);
    try {
      await patchDetection(d.id, body);
      setErr("");
      if (what === "assignee") setAssignee(null);
      if (what === "notes") setNotes(null);
    } catch (e) { setErr(`${what}: ${e.message}`); }
    setSaving("");
  };
  const history = [...(d.history || [])].reverse();
  const nEvents = (d.event_ids || []).length;
  return html`
    <section class="view detail" id="detail" data-id=${d.id}>
      <div class="detail-head">
        <a href="#/detections" class="back">← Detections</a>
        <h2><${SevBadge} sev=${d.severity} /> ${d.title || d.rule_id} <${StatusBadge} status=${d.status} /></h2>
      </div>
      ${err && html`<p class="error" role="alert" id="detail-error">${err}</p>`}
      <div class="detail-grid">
        <div class="card">
          <h3>Detection</h3>
          <dl class="kv">
            <dt>id</dt><dd class="mono" id="d-id">${d.id}</dd>
            <dt>rule</dt><dd class="mono">${d.rule_id}</dd>
            <dt>category</dt><dd>${d.category}</dd>
            <dt>group key</dt><dd class="mono" id="d-group">${d.group_key || "—"}</dd>
            <dt>count</dt><dd id="d-count">${d.count}</dd>
            <dt>confidence</dt><dd>${d.confidence != null ? Math.round(d.confidence * 100) + "%" : "—"}</dd>
            <dt>first seen</dt><dd>${fmtTime(d.first_seen)}</dd>
            <dt>last seen</dt><dd>${fmtTime(d.last_seen)}</dd>
            <dt>tenant</dt><dd>${d.tenant}</dd>
            <dt>tactics</dt><dd id="d-tactics">${(d.mitre_tactics || []).map((t) => html`<div><span class="mono">${t}</span> ${attackName(t)}</div>`)}</dd>
            <dt>techniques</dt><dd id="d-techniques">${(d.mitre_techniques || []).map((t) => html`<div><span class="mono">${t}</span> ${attackName(t)}</div>`)}</dd>
            ${d.owasp_category && html`<dt>OWASP</dt><dd>${d.owasp_category}</dd>`}
          </dl>
        </div>
        <div class="card">
          <h3>Triage</h3>
          <div class="field"><span class="lbl">status</span>
            <${StatusBadge} status=${d.status} />
            ${edit && html`<span id="d-status-actions">${nextStatuses(d.status).map((st) => html`
              <button data-status=${st} disabled=${!!saving} onClick=${() => save("status", { status: st })}>${label(st)}</button>`)}</span>`}
          </div>
          <div class="field"><span class="lbl">assignee</span>
            ${edit ? html`<input id="d-assignee" value=${assignee ?? d.assignee} placeholder="unassigned" onInput=${(e) => setAssignee(e.target.value)} />
              <button id="d-assignee-save" disabled=${assignee === null || !!saving} onClick=${() => save("assignee", { assignee: assignee.trim() })}>Save</button>`
              : html`<span id="d-assignee">${d.assignee || "unassigned"}</span>`}
          </div>
          <div class="field col"><span class="lbl">notes</span>
            ${edit ? html`<textarea id="d-notes" rows="4" value=${notes ?? d.notes} onInput=${(e) => setNotes(e.target.value)}></textarea>
              <div><button id="d-notes-save" disabled=${notes === null || !!saving} onClick=${() => save("notes", { notes })}>Save notes</button></div>`
              : html`<pre class="notes" id="d-notes">${d.notes || "—"}</pre>`}
          </div>
          <h3>History</h3>
          <table class="grid compact" id="d-history">
            <thead><tr><th>when</th><th>who</th><th>field</th><th>change</th></tr></thead>
            <tbody>${history.map((c) => html`<tr><td class="nowrap">${fmtTime(c.at)}</td><td>${c.by}</td><td>${c.field}</td>
              <td><span class="dim">${c.from || "∅"}</span> → ${c.to || "∅"}</td></tr>`)}</tbody>
          </table>
          ${history.length === 0 && html`<p class="empty">No changes yet.</p>`}
        </div>
      </div>
      <div class="card">
        <h3>Contributing events <span class="muted">${nEvents}${nEvents > MAX_EVENTS ? `, newest ${MAX_EVENTS} shown` : ""}</span></h3>
        <table class="grid timeline" id="d-events">
          <thead><tr><th>time</th><th>event id</th><th>sev</th><th>type</th><th>user</th><th>src_ip</th><th>message</th></tr></thead>
          <tbody>
            ${(events || []).map((e) => html`
              <tr data-event-id=${e.id} onClick=${() => !e._error && setOpen(e)}>
                <td class="nowrap">${fmtTime(e.time)}</td>
                <td class="mono">${e.id}</td>
                ${e._error ? html`<td colspan="5" class="error">${e._error}</td>` : html`
                <td><span class=${"sev sev-" + sevName(e.severity)}>${sevName(e.severity)}</span></td>
                <td class="mono">${e.type}</td><td>${e.user}</td><td class="mono">${e.src_ip}</td><td class="ellipsis">${e.message}</td>`}
              </tr>`)}
          </tbody>
        </table>
        ${events === null && html`<p class="muted">Loading events…</p>`}
      </div>
      ${open && html`<${EventFlyout} event=${open} onClose=${() => setOpen(null)} />`}
    </section>`;
}
