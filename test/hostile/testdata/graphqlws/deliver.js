// Runs the reference graphql-transport-ws client (npm graphql-ws) for
// TestGraphQLP99NPMClientReceivesSharedDeliveries: opens <clients>
// clients (one socket each), each with two subscriptions on the same query
// (one socket, two operation ids), and once every subscription has
// received <events> results prints
// {"subs": [{"client": i, "sub": j, "results": [<payload>...], "errors": [...]}]}
// as JSON and exits; after 20 s it prints what it has and exits with 1.
// Usage: node deliver.js <ws-url> <token> <clients> <events> <query>
const { createClient } = require('graphql-ws');
const WebSocket = require('ws');

const [url, token, nClients, nEvents, query] = process.argv.slice(2);
const subs = [];
const clients = [];
function done(code) {
  process.stdout.write(JSON.stringify({ subs }) + '\n');
  for (const c of clients) c.dispose();
  process.exit(code);
}
function check() {
  if (subs.every((s) => s.results.length >= Number(nEvents) || s.errors.length > 0)) done(0);
}
for (let i = 0; i < Number(nClients); i++) {
  const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { Authorization: 'Bearer ' + token }, lazy: false });
  clients.push(client);
  for (let j = 0; j < 2; j++) {
    const s = { client: i, sub: j, results: [], errors: [] };
    subs.push(s);
    client.subscribe({ query }, {
      next: (v) => { s.results.push(v); check(); },
      error: (e) => { s.errors.push(String(e && e.message || JSON.stringify(e))); check(); },
      complete: () => {},
    });
  }
}
setTimeout(() => done(1), 20000);
