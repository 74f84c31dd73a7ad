// Package store owns the durable, ordered log (SPEC 1): one NATS JetStream
// stream holding every accepted event. It starts the embedded in-process
// NATS server by default or connects to an external cluster; both take the
// same code path once connected. It appends events (with the integrity
// hash chain and idempotent ids), reads them back by sequence, time and id,
// and tails the stream with one ordered consumer per node.
package store
