// Vigil analyst console: Preact + htm, bundled by esbuild (no build step
// at runtime, no CDN). Routes live in the URL fragment (#/detections,
// #/detections/<id>, #/events, #/overview); a token may arrive as
// #token=... (a fragment never reaches the server) and is moved into
// sessionStorage and out of the address bar at once.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { html } from "./html.js";
import "./style.css";
import { S, set, useStore, reportError } from "./store.js";
import { whoami, refusalText } from "./api.js";
import { connect, disconnect } from "./stream.js";
import { loadAttackNames } from "./attack.js";
import { loadDetections, DetectionsView } from "./detections.js";
import { DetectionDetail } from "./detail.js";
import { EventsView } from "./events.js";
import { OverviewView } from "./overview.js";

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [view, ...rest] = hash.split("?")[0].split("/");
  const params = new URLSearchParams(hash.split("?")[1] || "");
  // #/detections?tactic=TA0006&technique=T1110 (the ATT&CK matrix links)
  // sets the table's filters, then leaves a clean URL.
  if (view === "detections" && (params.has("tactic") || params.has("technique"))) {
    S.detQuery = { ...S.detQuery, status: "all", tactic: params.get("tactic") || "", technique: params.get("technique") || "" };
    history.replaceState(null, "", "#/detections");
  }
  return { view: view || "detections", id: decodeURIComponent(rest.join("/")) };
}

function takeFragmentToken() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (!m) return;
  const tok = decodeURIComponent(m[1]);
  history.replaceState(null, "", location.pathname + location.search + "#/detections");
  S.token = tok;
}

async function signIn(token) {
  set({ authError: "", conn: "connecting", token });
  try {
    const me = await whoami(token);
    sessionStorage.setItem("vigil.token", token);
    set({ me, authError: "" });
    loadAttackNames();
    loadDetections();
    connect();
  } catch (err) {
    sessionStorage.removeItem("vigil.token");
    const authFail = err.status === 401 || err.status === 403;
    set({
      me: null, token: "", conn: authFail ? "refused" : "idle",
      authError: authFail ? refusalText(err.status) : `cannot check the token: ${err.message}`,
    });
  }
}

function signOut(reason) {
  disconnect();
  sessionStorage.removeItem("vigil.token");
  S.detections.clear();
  set({ me: null, token: "", authError: reason || "", conn: reason ? "refused" : "idle", events: [], pending: [], detLoaded: false });
}

// A CSP violation means part of the page did not load or run: say so.
// (early.js records them from the first byte of the page on.)
for (const v of window.__vigilCSP || []) reportError("blocked by the Content-Security-Policy", v);
window.addEventListener("vigil:csp", (e) => reportError("blocked by the Content-Security-Policy", e.detail));
window.addEventListener("vigil:refused", (ev) => signOut(refusalText(ev.detail.status, ev.detail.detail)));
window.addEventListener("hashchange", () => { takeFragmentToken(); if (S.token && !S.me) signIn(S.token); set({ route: parseRoute() }); });

function SignIn() {
  const s = useStore();
  const [tok, setTok] = useState("");
  const submit = (ev) => { ev.preventDefault(); if (tok.trim()) signIn(tok.trim()); };
  return html`
    <div class="signin">
      <form id="login" onSubmit=${submit}>
        <h1><span class="logo">◆</span> Vigil</h1>
        <p class="muted">Paste an API token, or open <code>/#token=…</code>. The token stays in this tab (sessionStorage).</p>
        <input id="token" type="password" placeholder="API token" autocomplete="off" aria-label="API token"
          value=${tok} onInput=${(e) => setTok(e.target.value)} autofocus />
        <button type="submit" class="primary" disabled=${s.conn === "connecting"}>Sign in</button>
        ${s.authError && html`<p id="login-error" class="error" role="alert">${s.authError}</p>`}
      </form>
    </div>`;
}

const CONN_TEXT = { idle: "offline", connecting: "connecting…", live: "live", reconnecting: "reconnecting…", refused: "refused" };

function TopBar() {
  const s = useStore();
  const me = s.me.principal;
  const nav = [["detections", "Detections"], ["events", "Live events"], ["overview", "Overview"]];
  const open = [...s.detections.values()].filter((d) => d.status === "active").length;
  return html`
    <header class="topbar">
      <a class="brand" href="#/detections"><span class="logo">◆</span> Vigil</a>
      <nav>
        ${nav.map(([v, t]) => html`<a href=${"#/" + v} id=${"nav-" + v} class=${s.route.view === v ? "on" : ""}>${t}
          ${v === "detections" && open ? html` <span class="pill">${open}</span>` : ""}</a>`)}
        <a href=${"/graphql#token=" + encodeURIComponent(s.token)} target="_blank" rel="noopener noreferrer" title="GraphiQL: queries and subscriptions with this token">GraphQL ↗</a>
      </nav>
      <span class="grow"></span>
      <span id="conn" class=${"conn conn-" + s.conn} data-state=${s.conn} title=${s.connDetail}>${CONN_TEXT[s.conn] || s.conn}</span>
      <span class="who" id="who" title=${"token id " + me.id}>${me.name || me.id} · <b>${me.role}</b> · ${me.tenant === "*" ? "all tenants" : "tenant " + me.tenant}</span>
      <button class="ghost" id="signout" onClick=${() => signOut("")}>Sign out</button>
    </header>`;
}

function ErrorBar() {
  const s = useStore();
  if (!s.errors.length) return null;
  return html`<div class="errorbar" id="errors" role="alert">
    ${s.errors.map((e) => html`<div>${e.msg}</div>`)}
    <button class="ghost" onClick=${() => set({ errors: [] })}>dismiss</button></div>`;
}

function App() {
  const s = useStore();
  useEffect(() => {
    if (s.me && s.me.principal) document.body.dataset.role = s.me.principal.role;
  }, [s.me]);
  if (!s.me) return html`<${SignIn} />`;
  const r = s.route;
  let view;
  if (r.view === "detections" && r.id) view = html`<${DetectionDetail} id=${r.id} />`;
  else if (r.view === "events") view = html`<${EventsView} id=${r.id} />`;
  else if (r.view === "overview") view = html`<${OverviewView} />`;
  else view = html`<${DetectionsView} />`;
  return html`<${TopBar} /><${ErrorBar} /><main class="main">${view}</main>`;
}

takeFragmentToken();
S.route = parseRoute();
render(html`<${App} />`, document.getElementById("app"));
if (S.token) signIn(S.token);
