package graphql

import (
	"context"
	"fmt"
	"strings"
	"testing"

	gql "github.com/99designs/gqlgen/graphql"
)

func TestShapeLimit(t *testing.T) {
	l := shapeLimit{maxFields: 10, maxDepth: 3}
	var bomb strings.Builder
	bomb.WriteString("{ ...F0 }\n")
	for i := range 40 {
		fmt.Fprintf(&bomb, "fragment F%d on Query { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	bomb.WriteString("fragment F40 on Query { status { status } }\n")
	for _, tc := range []struct {
		name, query, want string // want "": accepted
	}{
		{"small", "{ events { events { id } } }", ""},
		{"ten fields", "{ a: status { status } b: status { status } c: status { status } d: status { status } e: status { status } }", ""},
		{"eleven fields", "{ a: status { status } b: status { status } c: status { status } d: status { status } e: status { status } f: status }", "the limit is 10"},
		{"depth 3", "{ events { events { id } } }", ""},
		{"depth 4", "{ events { events { data { x } } } }", "query depth 4 exceeds the limit of 3"},
		{"depth through fragments", "{ events { ...P } } fragment P on EventPage { events { ... on Event { data { x } } } }", "query depth 4 exceeds the limit of 3"},
		{"fragment bomb", bomb.String(), "the limit is 10"},
		{"fragment cycle", "{ ...A } fragment A on Query { status { status } ...A }", ""}, // validation refuses it
		{"syntax error", "{ events {", ""},                                                // gqlgen reports it
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := l.MutateOperationParameters(context.Background(), &gql.RawParams{Query: tc.query})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Message, tc.want)):
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestListCost(t *testing.T) {
	ptr := func(n int) *int { return &n }
	for _, tc := range []struct {
		child int
		limit *int
		want  int
	}{
		{2, nil, 201}, {2, ptr(1000), 2001}, {0, ptr(5), 6},
		{2, ptr(1 << 62), 1 + maxListLimit*2}, // clamped: cannot overflow
		{2, ptr(-7), 3},
	} {
		if got := listCost(tc.child, tc.limit); got != tc.want {
			t.Errorf("listCost(%d, %v) = %d, want %d", tc.child, tc.limit, got, tc.want)
		}
	}
}

func TestProtocolCheck(t *testing.T) {
	type step struct {
		msg       string
		wantClose int
		wantReply string // legacy: the reply's type
	}
	for _, tc := range []struct {
		name, protocol string
		steps          []step
	}{
		{"transport-ws session", protoTransportWS, []step{
			{`{"type":"connection_init","payload":{"token":"x"}}`, 0, ""},
			{`{"type":"ping"}`, 0, ""},
			{`{"type":"subscribe","id":"1","payload":{"query":"subscription { events { id } }","variables":null}}`, 0, ""},
			{`{"type":"complete","id":"1"}`, 0, ""},
			{`{"type":"pong","payload":null}`, 0, ""},
		}},
		{"transport-ws junk", protoTransportWS, []step{{`hello`, CloseBadRequest, ""}}},
		{"transport-ws empty", protoTransportWS, []step{{``, CloseBadRequest, ""}}},
		{"transport-ws type null", protoTransportWS, []step{{`{"type":null}`, CloseBadRequest, ""}}},
		{"transport-ws numeric id", protoTransportWS, []step{
			{`{"type":"connection_init"}`, 0, ""},
			{`{"type":"subscribe","id":1,"payload":{"query":"{ __typename }"}}`, CloseBadRequest, ""},
		}},
		{"transport-ws complete without id", protoTransportWS, []step{
			{`{"type":"connection_init"}`, 0, ""},
			{`{"type":"complete"}`, CloseBadRequest, ""},
		}},
		{"transport-ws second init", protoTransportWS, []step{
			{`{"type":"connection_init"}`, 0, ""},
			{`{"type":"connection_init"}`, CloseTooManyInits, ""},
		}},
		{"transport-ws subscribe first", protoTransportWS, []step{
			{`{"type":"subscribe","id":"1","payload":{"query":"{ __typename }"}}`, CloseUnauthorized, ""},
		}},
		{"legacy session", protoLegacyWS, []step{
			{`{"type":"connection_init","payload":{}}`, 0, ""},
			{`{"type":"start","id":"1","payload":{"query":"subscription { events { id } }"}}`, 0, ""},
			{`{"type":"stop","id":"1"}`, 0, ""},
			{`{"type":"connection_terminate"}`, 0, ""},
		}},
		{"legacy junk", protoLegacyWS, []step{
			{`[`, 0, "connection_error"},
			{`{"type":"connection_init","payload":"x"}`, 0, "connection_error"},
			{`{"type":"data","id":"3"}`, 0, "error"},
			{`{"type":"start","id":"4","payload":{"query":7}}`, 0, "error"},
			{`{"type":"stop","id":""}`, 0, "error"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := protocolState{protocol: tc.protocol}
			for _, s := range tc.steps {
				v := st.check([]byte(s.msg))
				if v.closeCode != s.wantClose {
					t.Fatalf("%s: close %d %q, want %d", s.msg, v.closeCode, v.closeReason, s.wantClose)
				}
				got := ""
				if r, ok := v.reply.(legacyReply); ok {
					got = r.Type
					if r.Payload.Message == "" {
						t.Fatalf("%s: reply without a message", s.msg)
					}
				}
				if got != s.wantReply {
					t.Fatalf("%s: reply %q, want %q", s.msg, got, s.wantReply)
				}
			}
		})
	}
}

func TestCloseReasonFits(t *testing.T) {
	r := closeReason(strings.Repeat("é", 100))
	if len(r) > 123 || !strings.HasPrefix(strings.Repeat("é", 100), r) || len(r)%2 != 0 {
		t.Fatalf("closeReason cut badly: %d bytes", len(r))
	}
}
