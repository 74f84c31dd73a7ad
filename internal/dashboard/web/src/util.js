export const SEVERITIES = ["critical", "high", "medium", "low", "info"];
export const SEV_RANK = { critical: 5, high: 4, medium: 3, low: 2, info: 1 };
export const STATUSES = ["active", "investigating", "resolved", "false_positive"];
export const CATEGORIES = ["authentication", "authorization", "audit", "encryption", "rate_limit", "insider_threat",
  "memory", "circuit_breaker", "analysis", "threat_intel", "fraud", "response", "orchestration", "detection", "system"];

// The lifecycle (docs/detections.md): moves between the open states and to
// a final one are free; leaving resolved/false_positive needs "reopen".
export function nextStatuses(status) {
  if (status === "resolved" || status === "false_positive") return ["reopen"];
  return STATUSES.filter((s) => s !== status);
}

export const label = (s) => (s || "").replace(/_/g, " ");

export function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function ago(t) {
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (!isFinite(s)) return "";
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function sevName(s) {
  if (typeof s === "number") return ["info", "low", "medium", "high", "critical"][s] || String(s);
  return s || "";
}

// celError turns the server's CEL compile error ("expr: ERROR: <input>:1:13:
// Syntax error: mismatched input '<EOF>' expecting {...}\n | ...") into a
// short message and the column it points at.
export function celError(raw) {
  const m = /<input>:(\d+):(\d+):\s*([^\n]*)/.exec(raw || "");
  if (!m) return { message: (raw || "").replace(/^expr:\s*/, "").split("\n")[0], column: 0 };
  let msg = m[3].trim();
  const mis = /^Syntax error: mismatched input '(.*?)' expecting/.exec(msg);
  if (mis) msg = mis[1] === "<EOF>" ? "syntax error: the expression ends too early" : `syntax error: unexpected '${mis[1]}'`;
  else if (/^Syntax error: token recognition error at: '(.*)'/.test(msg)) msg = msg.replace(/^Syntax error: token recognition error at:/, "syntax error: unknown token");
  else if (/^Syntax error: extraneous input '(.*?)' expecting/.test(msg)) msg = `syntax error: unexpected '${/'(.*?)'/.exec(msg)[1]}'`;
  else msg = msg.replace(/^Syntax error:/, "syntax error:");
  return { message: msg, line: Number(m[1]), column: Number(m[2]) };
}

export function debounce(fn, ms) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
