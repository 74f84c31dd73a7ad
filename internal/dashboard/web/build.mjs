// Bundles the console (and, for GET /graphql, GraphiQL) into ../static,
// the directory the Go binary embeds. The output is committed: `go run
// ./cmd/vigil serve` needs no Node, and .ci/run rebuilds it and fails when
// the committed bundle differs from what these sources produce.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const out = new URL("../static/", import.meta.url).pathname;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
copyFileSync(new URL("index.html", import.meta.url).pathname, out + "index.html");
copyFileSync(new URL("graphiql.html", import.meta.url).pathname, out + "graphiql.html");

const common = {
  bundle: true, minify: true, sourcemap: false, target: ["es2020"], legalComments: "none",
  logLevel: "warning", charset: "utf8",
};
await build({ ...common, entryPoints: { app: "src/main.js", early: "src/early.js" }, outdir: out, format: "iife" });
// GraphiQL (React) for GET /graphql from a browser: a separate bundle so
// the console stays small.
await build({
  ...common, entryPoints: { graphiql: "src/graphiql.js" }, outdir: out, format: "iife",
  define: { "process.env.NODE_ENV": '"production"' }, loader: { ".woff": "dataurl", ".woff2": "dataurl", ".ttf": "dataurl", ".svg": "dataurl" },
});
