// GraphiQL for GET /graphql from a browser, bundled like the console (no
// CDN). It uses the console's session token (sessionStorage, or
// /graphql#token=...), sends it as a bearer header on queries and as
// connectionParams on the graphql-ws subscription socket.
import React from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { createClient } from "graphql-ws";
import "graphiql/graphiql.css";
import "./graphiql.css";

const h = React.createElement;

const EXAMPLE = `# Vigil GraphQL. Queries run over POST /graphql; subscriptions over
# graphql-ws on the same path, with this tab's console token.
subscription {
  events(filter: { minSeverity: "high" }) {
    seq
    time
    type
    severity
    user
    srcIp
    message
  }
}
`;

function takeToken() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("vigil.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("vigil.token") || "";
}

function SignIn() {
  const [tok, setTok] = React.useState("");
  return h("form", {
    className: "gql-signin",
    onSubmit: (e) => { e.preventDefault(); sessionStorage.setItem("vigil.token", tok.trim()); location.reload(); },
  },
  h("h1", null, "Vigil GraphQL"),
  h("p", null, "Paste an API token (or sign in to the console at / first and follow its GraphQL link)."),
  h("input", { id: "gql-token", type: "password", value: tok, onChange: (e) => setTok(e.target.value), placeholder: "API token", autoComplete: "off" }),
  h("button", { type: "submit" }, "Open GraphiQL"));
}

function App() {
  const token = takeToken();
  if (!token) return h(SignIn);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const wsClient = createClient({
    url: `${proto}//${location.host}/graphql`,
    connectionParams: { Authorization: `Bearer ${token}` },
    lazy: true,
  });
  const fetcher = createGraphiQLFetcher({ url: "/graphql", headers: { Authorization: `Bearer ${token}` }, wsClient });
  return h(GraphiQL, { fetcher, defaultQuery: EXAMPLE, defaultEditorToolsVisibility: true, shouldPersistHeaders: false, defaultTheme: "dark" },
    h(GraphiQL.Logo, null, h("a", { href: "/#/detections" }, "Vigil")));
}

createRoot(document.getElementById("graphiql")).render(h(App));
