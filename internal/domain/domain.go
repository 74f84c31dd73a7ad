// Package domain holds the types every layer of Vigil shares and that
// belong to none of them: the acknowledgement of an appended event and the
// kinds of error (not found, invalid, forbidden, conflict, unavailable, too
// large, ...), with their one mapping to an HTTP status and a WebSocket
// close code.
//
// It sits at the centre with internal/event: it imports only the standard
// library, so ingest, detect, graphql, rest and the inputs can speak of an
// Ack or a missing event without linking the JetStream log
// (internal/store). The dependency test (internal/archtest) keeps it so.
package domain

// Ack is the log's answer for one appended event (SPEC 3: the ingest
// response's "acks"). The JSON names are the wire contract.
type Ack struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}
