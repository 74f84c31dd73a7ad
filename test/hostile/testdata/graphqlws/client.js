// Runs the reference graphql-transport-ws client (npm graphql-ws, the one
// Apollo uses) against a Vigil node for TestGraphQLWSClientNoReconnectStorm:
// subscribes with the token given, and after the given milliseconds prints
// {"opened": <sockets opened>, "codes": [<close codes>]} as JSON.
// Usage: node client.js <ws-url> <token> <ms>
const { createClient } = require('graphql-ws');
const WebSocket = require('ws');

const [url, token, ms] = process.argv.slice(2);
let opened = 0;
const codes = [];
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: 'Bearer ' + token },
  on: {
    opened: () => { opened++; },
    closed: (e) => { if (e && typeof e.code === 'number') codes.push(e.code); },
  },
});
client.subscribe({ query: 'subscription { events { id } }' }, {
  next: () => {},
  error: () => {},
  complete: () => {},
});
setTimeout(() => {
  process.stdout.write(JSON.stringify({ opened, codes }) + '\n');
  client.dispose();
  process.exit(0);
}, Number(ms));
