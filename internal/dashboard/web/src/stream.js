// The live connection: one native WebSocket (/api/v1/stream) carrying two
// subscriptions, detection changes and the filtered live event stream.
// A browser cannot see the HTTP status of a refused handshake (it reports
// 1006), so before every reconnect the token is checked over REST: a 401
// there signs out with a plain refusal and nothing retries.
import { S, set } from "./store.js";
import { whoami, refuse } from "./api.js";
import { celError } from "./util.js";

const MAX_ROWS = 1000;
const MAX_PENDING = 5000;

let ws = null;
let retryTimer = null;
let backoff = 1000;
let liveSeq = 0;
let liveSub = "";       // the subscription whose events fill the table
let trialSub = "";      // a new filter waiting for "subscribed" or "error"
let trialFilter = null;
const last = {};        // sub id -> last seq delivered (resume after reconnect)

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

export function connect() {
  clearTimeout(retryTimer);
  if (ws) { ws.onclose = null; ws.close(); }
  set({ conn: S.conn === "live" ? "reconnecting" : "connecting" });
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // The token travels as a subprotocol (a header), never in the URL, which
  // reverse proxies log; the server selects "vigil" (docs/security.md).
  const sock = new WebSocket(`${proto}//${location.host}/api/v1/stream`, ["vigil", "vigil.bearer." + base64url(S.token)]);
  ws = sock;
  sock.onopen = () => {
    backoff = 1000;
    send({ op: "subscribe", id: "det", filter: { categories: ["detection"] }, from: last.det ? { seq: last.det + 1 } : "latest" });
    const id = `live-${++liveSeq}`;
    const from = last[liveSub] ? { seq: last[liveSub] + 1 } : "latest";
    liveSub = id;
    send({ op: "subscribe", id, filter: S.liveFilter, from });
  };
  sock.onmessage = (m) => onMessage(JSON.parse(m.data));
  sock.onclose = (ev) => onClose(ev);
}

// base64url encodes s's UTF-8 bytes without padding: every character is
// one a subprotocol may hold.
function base64url(s) {
  let bin = "";
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function disconnect() {
  clearTimeout(retryTimer);
  if (ws) { ws.onclose = null; ws.close(); ws = null; }
  liveSub = trialSub = "";
  set({ conn: "idle" });
}

async function onClose(ev) {
  ws = null;
  set({ conn: "reconnecting", connDetail: `connection closed (${ev.code}${ev.reason ? ": " + ev.reason : ""})` });
  try {
    await whoami(S.token);
  } catch (err) {
    if (err.status === 401 || err.status === 403) { refuse(err.status, err.message.replace(/ \(\d+\)$/, "")); return; }
    // unreachable or failing server: retry below
  }
  retryTimer = setTimeout(connect, backoff);
  backoff = Math.min(backoff * 2, 15000);
}

// applyFilter starts a subscription with the new filter beside the running
// one. Only when the server accepts it does the old one stop and the table
// clear; a filter that fails to compile leaves the old stream running.
export function applyFilter(filter) {
  trialSub = `live-${++liveSeq}`;
  trialFilter = filter;
  set({ filterError: null });
  send({ op: "subscribe", id: trialSub, filter, from: "latest" });
}

function onMessage(msg) {
  switch (msg.type) {
    case "subscribed":
      if (msg.id === trialSub) {
        send({ op: "unsubscribe", id: liveSub });
        liveSub = trialSub;
        trialSub = "";
        set({ liveFilter: trialFilter, events: [], pending: [], filterError: null });
      }
      if (msg.id === liveSub) set({ conn: "live", connDetail: "" });
      break;
    case "error":
      if (msg.id && msg.id === trialSub) {
        const expr = (trialFilter && trialFilter.expr) || "";
        const fe = msg.code === "bad_filter" && /^expr:/.test(msg.message) ? celError(msg.message) : { message: msg.message, column: 0 };
        trialSub = "";
        set({ filterError: { ...fe, expr, code: msg.code } });
      } else {
        set({ connDetail: `${msg.code}: ${msg.message}` });
      }
      break;
    case "lagged":
      last[msg.id] = msg.resume_from - 1;
      break;
    case "event":
      last[msg.sub] = msg.event.seq;
      if (msg.sub === "det") onDetectionEvent(msg.event);
      else if (msg.sub === liveSub) onLiveEvent(msg.event);
      break;
  }
}

function onDetectionEvent(e) {
  let d = e.data;
  if (typeof d === "string") { try { d = JSON.parse(d); } catch { return; } }
  if (!d || !d.id) return;
  S.detections.set(d.id, { ...(S.detections.get(d.id) || {}), ...d });
  set();
}

function onLiveEvent(e) {
  S.received++;
  if (S.paused) {
    S.pending.unshift(e);
    if (S.pending.length > MAX_PENDING) S.pending.length = MAX_PENDING;
  } else {
    S.events.unshift(e);
    if (S.events.length > MAX_ROWS) S.events.length = MAX_ROWS;
  }
  set();
}

export function setPaused(p) {
  if (!p && S.pending.length) {
    S.events = [...S.pending, ...S.events].slice(0, MAX_ROWS);
    S.pending = [];
  }
  set({ paused: p });
}
