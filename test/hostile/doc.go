// Package hostile holds Vigil's fault and attack tests (issue 8): each test
// drives a real node (internal/testnode: embedded JetStream in a temporary
// directory, HTTP on a loopback port) or a real three-node NATS cluster over
// real sockets, plays the hostile or failing party, and asserts the safe
// outcome: nothing acknowledged is lost, nothing is leaked across tenants,
// every resource a client can make the server spend is bounded, and a client
// that is cut off is told why.
//
// One file per topic. Heavy load tests skip under -short but run in .ci/run.
package hostile
