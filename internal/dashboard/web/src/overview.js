// Overview: counts over the last hour or day from the server
// (GET /api/v1/stats), the event rate per category (uPlot, with axes,
// legend and hover values), top rules/users/source IPs, and the ATT&CK
// matrix of the tactics and techniques in the current detections.
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { html } from "./html.js";
import { useStore } from "./store.js";
import { api } from "./api.js";
import { SEVERITIES, label } from "./util.js";
import { TACTICS, attackName } from "./attack.js";

const COLORS = ["#5fb3f9", "#f0c674", "#b5bd68", "#e06c75", "#c678dd", "#56b6c2", "#de935f", "#98c379", "#e5c07b", "#61afef"];
const MAX_SERIES = 8;

function RateChart({ stats }) {
  const ref = useRef(null);
  useEffect(() => {
    if (!stats || !ref.current) return;
    const cats = Object.entries(stats.series).map(([c, v]) => [c, v.reduce((a, b) => a + b, 0)])
      .sort((a, b) => b[1] - a[1]).slice(0, MAX_SERIES).map(([c]) => c);
    const per = stats.bucket_seconds || 60;
    const unit = per >= 60 ? "min" : "s";
    const scale = per >= 60 ? per / 60 : per;
    const total = stats.buckets.map((_, i) => Object.values(stats.series).reduce((a, s) => a + s[i], 0) / scale);
    const data = [stats.buckets, total, ...cats.map((c) => stats.series[c].map((v) => v / scale))];
    const fmt = (u, v) => (v == null ? "—" : (Math.round(v * 100) / 100).toString());
    const opts = {
      width: ref.current.clientWidth || 800, height: 220,
      cursor: { points: { size: 7 } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { stroke: "#8b95a7", grid: { stroke: "#232a36" }, ticks: { stroke: "#232a36" } },
        { stroke: "#8b95a7", grid: { stroke: "#232a36" }, ticks: { stroke: "#232a36" }, label: `events / ${unit}`, size: 50 },
      ],
      series: [
        { label: "time" },
        { label: "all", stroke: "#e6e9ef", width: 2, value: fmt, points: { show: false } },
        ...cats.map((c, i) => ({ label: c, stroke: COLORS[i % COLORS.length], width: 1.25, value: fmt, points: { show: false } })),
      ],
    };
    const plot = new uPlot(opts, data, ref.current);
    const ro = new ResizeObserver(() => plot.setSize({ width: ref.current.clientWidth, height: 220 }));
    ro.observe(ref.current);
    return () => { ro.disconnect(); plot.destroy(); };
  }, [stats]);
  return html`<div class="chart" id="rate-chart" ref=${ref}></div>`;
}

function TopList({ id, title, items, name }) {
  const max = Math.max(1, ...(items || []).map((x) => x.count));
  return html`<div class="card top" id=${id}><h3>${title}</h3>
    ${(items || []).length === 0 ? html`<p class="empty">none</p>` : html`<table class="grid compact"><tbody>
      ${items.map((x) => html`<tr><td class="ellipsis" title=${x.key}>${name && name(x.key) ? html`${name(x.key)} <span class="mono dim">${x.key}</span>` : html`<span class="mono">${x.key}</span>`}</td>
        <td class="barcell"><span class="bar" style=${{ width: (100 * x.count) / max + "%" }}></span></td><td class="num">${x.count}</td></tr>`)}
    </tbody></table>`}</div>`;
}

// The matrix: one column per tactic seen (kill-chain order), one cell per
// technique under it, counting the detections that carry both.
function AttackMatrix({ detections }) {
  const cells = new Map(); // tactic -> Map(technique -> count)
  for (const d of detections) {
    const tactics = d.mitre_tactics && d.mitre_tactics.length ? d.mitre_tactics : ["?"];
    for (const ta of tactics) {
      if (!cells.has(ta)) cells.set(ta, new Map());
      const col = cells.get(ta);
      // Sub-techniques count under their technique (T1110.001 in T1110),
      // as the ATT&CK matrix nests them.
      for (const t of new Set((d.mitre_techniques || []).map((x) => x.split(".")[0]))) col.set(t, (col.get(t) || 0) + 1);
    }
  }
  const order = [...TACTICS.map(([id]) => id), ...[...cells.keys()].filter((k) => !TACTICS.some(([id]) => id === k))];
  const cols = order.filter((id) => cells.has(id));
  const max = Math.max(1, ...[...cells.values()].flatMap((m) => [...m.values()]));
  return html`<div class="card" id="attack"><h3>ATT&CK matrix <span class="muted">tactics and techniques of the current detections; click a cell to filter</span></h3>
    ${cols.length === 0 ? html`<p class="empty">No detections with ATT&CK tags yet.</p>` : html`
    <div class="matrix">${cols.map((ta) => html`
      <div class="mcol" data-tactic=${ta}>
        <a class="mhead" href=${"#/detections?tactic=" + encodeURIComponent(ta)} title=${ta}>${attackName(ta) || ta}<span class="mono dim"> ${ta}</span></a>
        ${[...cells.get(ta).entries()].sort((a, b) => b[1] - a[1]).map(([t, n]) => html`
          <a class="mcell" data-technique=${t} href=${`#/detections?tactic=${encodeURIComponent(ta)}&technique=${encodeURIComponent(t)}`}
            style=${{ "--heat": (0.25 + (0.75 * n) / max).toFixed(2) }} title=${`${t} ${attackName(t)}: ${n} detection(s)`}>
            <span class="mono">${t}</span><span class="mname">${attackName(t)}</span><b>${n}</b></a>`)}
      </div>`)}</div>`}</div>`;
}

export function OverviewView() {
  const s = useStore();
  const [win, setWin] = useState("1h");
  const [stats, setStats] = useState(null);
  const [err, setErr] = useState("");
  useEffect(() => {
    let live = true;
    const load = () => api("GET", `/api/v1/stats?window=${win}`)
      .then((st) => { if (live) { setStats(st); setErr(""); } })
      .catch((e) => live && setErr(e.message));
    load();
    const t = setInterval(load, 15000);
    return () => { live = false; clearInterval(t); };
  }, [win]);
  const ruleTitles = new Map([...s.detections.values()].map((d) => [d.rule_id, d.title]));
  const cats = stats ? Object.entries(stats.by_category).sort((a, b) => b[1] - a[1]) : [];
  return html`
    <section class="view" id="overview-view">
      <div class="toolbar">
        <div class="tabs" id="win-tabs">${["1h", "24h"].map((w) => html`
          <button data-window=${w} class=${win === w ? "on" : ""} onClick=${() => setWin(w)}>last ${w === "1h" ? "hour" : "24 hours"}</button>`)}</div>
        <span class="grow"></span>
        ${stats && html`<span class="muted">from the event log · ${stats.scanned} events read${stats.truncated ? " (window truncated to the newest)" : ""}</span>`}
      </div>
      ${err && html`<p class="error" role="alert" id="overview-error">stats: ${err}</p>`}
      ${stats && html`
        <div class="counters" id="sev-counters">
          <div class="counter total"><b id="total-count">${stats.total}</b><span>events</span></div>
          ${SEVERITIES.map((sv) => html`<div class=${"counter c-" + sv} data-severity=${sv}><b>${stats.by_severity[sv] || 0}</b><span>${sv}</span></div>`)}
        </div>
        <div class="counters small" id="cat-counters">
          ${cats.map(([c, n]) => html`<div class="counter" data-category=${c}><b>${n}</b><span>${label(c)}</span></div>`)}
        </div>
        <div class="card"><h3>Event rate <span class="muted">per category, last ${win}</span></h3><${RateChart} stats=${stats} /></div>
        <div class="tops">
          <${TopList} id="top-rules" title="Top rules (new detections)" items=${stats.top_rules} name=${(rid) => ruleTitles.get(rid)} />
          <${TopList} id="top-users" title="Top users" items=${stats.top_users} />
          <${TopList} id="top-ips" title="Top source IPs" items=${stats.top_src_ips} />
          <${TopList} id="top-types" title="Top event types" items=${stats.top_types} />
        </div>`}
      <${AttackMatrix} detections=${[...s.detections.values()]} />
    </section>`;
}
