// One small observable store for the whole console: views read it through
// useStore and re-render (batched to one frame) when it changes.
import { useEffect, useReducer } from "preact/hooks";

export const S = {
  token: sessionStorage.getItem("vigil.token") || "",
  me: null,             // GET /api/v1/whoami
  authError: "",        // why sign-in failed (shown on the sign-in form)
  conn: "idle",         // idle | connecting | live | reconnecting | refused
  connDetail: "",
  detections: new Map(),
  detLoaded: false,
  detError: "",
  events: [],           // newest first
  paused: false,
  pending: [],          // events received while paused
  received: 0,
  liveFilter: {},       // the filter the running live subscription uses
  filterError: null,    // {message, column, expr}
  errors: [],           // API errors shown in the error bar
  route: { view: "detections", id: "" },
  detQuery: { status: "all", severity: "", tactic: "", technique: "", assignee: "", q: "", sort: "severity", dir: -1 },
};

const listeners = new Set();
let scheduled = false;

export function set(patch) {
  if (patch) Object.assign(S, patch);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    for (const f of listeners) f();
  });
}

export function useStore() {
  const [, force] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    listeners.add(force);
    return () => listeners.delete(force);
  }, []);
  return S;
}

export function reportError(where, err) {
  const msg = `${where}: ${err && err.message ? err.message : err}`;
  S.errors = [...S.errors.filter((e) => e.msg !== msg).slice(-3), { msg, at: Date.now() }];
  set();
}
