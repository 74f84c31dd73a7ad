package graphql

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Client message checks of the two GraphQL WebSocket protocols (issue 8).
// gqlgen ends a connection on a message it cannot decode with a 1000
// Normal Closure (or 1002 before connection_init), which the reference
// graphql-transport-ws client takes as "reconnect now". The protocols say
// otherwise:
//
//   - graphql-transport-ws (github.com/enisdenjo/graphql-ws PROTOCOL.md):
//     a message of a type or format the protocol does not specify closes
//     the socket with 4400 <error message>; a second connection_init with
//     4429; an operation before connection_ack with 4401; an init timeout
//     with 4408.
//   - graphql-ws (the legacy subscriptions-transport-ws): the server
//     answers with a message and keeps the connection — connection_error
//     for a message that is not a JSON object with a type, error (with
//     the operation's id) for a type or fields it does not accept.
//
// Each message is checked before gqlgen sees it (gobwasConn.NextReader).

// Close codes of graphql-transport-ws.
const (
	CloseBadRequest   = 4400
	CloseUnauthorized = 4401
	CloseInitTimeout  = 4408
	CloseTooManyInits = 4429
)

const (
	protoTransportWS = "graphql-transport-ws"
	protoLegacyWS    = "graphql-ws"
)

// wireMessage is a client message as sent: fields kept raw so that their
// JSON types can be checked.
type wireMessage struct {
	Type    json.RawMessage `json:"type"`
	ID      json.RawMessage `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// protocolVerdict is what to do with one client message.
type protocolVerdict struct {
	// closeCode, when not 0, closes the connection with closeReason.
	closeCode   int
	closeReason string
	// reply, when not nil, is sent and the message dropped (legacy).
	reply any
	// opID and opQuery are a subscribe (graphql-ws: start) message's id
	// and query, for direct writes (directwrite.go).
	opID, opQuery string
}

// protocolState follows one connection's protocol: only the reading
// goroutine uses it.
type protocolState struct {
	protocol string
	inited   bool // a connection_init went through
}

// check judges one client message; the zero verdict passes it to gqlgen.
func (st *protocolState) check(b []byte) protocolVerdict {
	switch st.protocol {
	case protoTransportWS:
		return st.checkTransportWS(b)
	case protoLegacyWS, "":
		return st.checkLegacyWS(b)
	}
	return protocolVerdict{} // gqlgen refuses other subprotocols itself
}

func (st *protocolState) checkTransportWS(b []byte) protocolVerdict {
	bad := func(format string, args ...any) protocolVerdict {
		return protocolVerdict{closeCode: CloseBadRequest, closeReason: closeReason(fmt.Sprintf(format, args...))}
	}
	m, typ, err := decodeWire(b)
	if err != nil {
		return bad("%v", err)
	}
	switch typ {
	case "connection_init":
		if st.inited {
			return protocolVerdict{closeCode: CloseTooManyInits, closeReason: "Too many initialisation requests"}
		}
		if !isObjectOrAbsent(m.Payload) {
			return bad("connection_init payload must be an object")
		}
		st.inited = true
	case "ping", "pong":
		if !isObjectOrAbsent(m.Payload) {
			return bad("%s payload must be an object", typ)
		}
	case "subscribe":
		if !st.inited {
			return protocolVerdict{closeCode: CloseUnauthorized, closeReason: "Unauthorized"}
		}
		if !isNonEmptyString(m.ID) {
			return bad("subscribe needs a non-empty string id")
		}
		var p struct {
			Query json.RawMessage `json:"query"`
		}
		if !isObject(m.Payload) || json.Unmarshal(m.Payload, &p) != nil || !isNonEmptyString(p.Query) {
			return bad("subscribe payload must be an object with a query string")
		}
		return startVerdict(m.ID, p.Query)
	case "complete":
		if !isNonEmptyString(m.ID) {
			return bad("complete needs a non-empty string id")
		}
	default:
		return bad("unknown message type %q", typ)
	}
	return protocolVerdict{}
}

func (st *protocolState) checkLegacyWS(b []byte) protocolVerdict {
	m, typ, err := decodeWire(b)
	if err != nil {
		return protocolVerdict{reply: legacyReply{Type: "connection_error", Payload: legacyError{Message: err.Error()}}}
	}
	bad := func(msg string) protocolVerdict {
		r := legacyReply{Type: "error", Payload: legacyError{Message: msg}}
		var id string
		if json.Unmarshal(m.ID, &id) == nil {
			r.ID = id
		}
		return protocolVerdict{reply: r}
	}
	switch typ {
	case "connection_init":
		if !isObjectOrAbsent(m.Payload) {
			return protocolVerdict{reply: legacyReply{Type: "connection_error", Payload: legacyError{Message: "connection_init payload must be an object"}}}
		}
		st.inited = true
	case "connection_terminate":
	case "start":
		if !isNonEmptyString(m.ID) {
			return bad("start needs a non-empty string id")
		}
		var p struct {
			Query json.RawMessage `json:"query"`
		}
		if !isObject(m.Payload) || json.Unmarshal(m.Payload, &p) != nil || !isNonEmptyString(p.Query) {
			return bad("start payload must be an object with a query string")
		}
		return startVerdict(m.ID, p.Query)
	case "stop":
		if !isNonEmptyString(m.ID) {
			return bad("stop needs a non-empty string id")
		}
	default:
		return bad(fmt.Sprintf("unknown message type %q", typ))
	}
	return protocolVerdict{}
}

// startVerdict passes an operation's start to gqlgen with its id and
// query (both already checked to be non-empty strings).
func startVerdict(id, query json.RawMessage) protocolVerdict {
	var v protocolVerdict
	if json.Unmarshal(id, &v.opID) != nil || json.Unmarshal(query, &v.opQuery) != nil {
		return protocolVerdict{}
	}
	return v
}

type legacyReply struct {
	Type    string      `json:"type"`
	ID      string      `json:"id,omitempty"`
	Payload legacyError `json:"payload"`
}

type legacyError struct {
	Message string `json:"message"`
}

// decodeWire decodes a message that must be a JSON object with a string type.
func decodeWire(b []byte) (wireMessage, string, error) {
	var m wireMessage
	if !isObject(b) {
		return m, "", fmt.Errorf("message must be a JSON object")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, "", fmt.Errorf("message is not valid JSON: %w", err)
	}
	var typ string
	if len(m.Type) == 0 || json.Unmarshal(m.Type, &typ) != nil || typ == "" {
		return m, "", fmt.Errorf("message needs a string type")
	}
	return m, typ, nil
}

func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

func isObjectOrAbsent(b json.RawMessage) bool {
	t := bytes.TrimSpace(b)
	return len(t) == 0 || bytes.Equal(t, []byte("null")) || t[0] == '{'
}

func isNonEmptyString(b json.RawMessage) bool {
	var s string
	return json.Unmarshal(b, &s) == nil && s != ""
}

// closeReason fits a close reason in a close frame (123 bytes of text),
// without cutting a UTF-8 sequence.
func closeReason(s string) string {
	const maxLen = 123
	if len(s) <= maxLen {
		return s
	}
	s = s[:maxLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
