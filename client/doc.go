// Package client is Vigil's Go client: publish events (batched, retried
// with idempotent ids) and subscribe to the live stream (reconnecting and
// resuming from the last seq seen, so a dropped connection loses nothing).
//
// The package has its own types (Event, Filter, Severity, Category, Ack,
// Problem) and imports nothing of the server: what it promises is the wire
// format of SPEC 2 (events), 4 (filters) and 5 (the native stream), which
// these types encode exactly (TestWireMatchesServer).
//
// Publish a batch; events without an id get a UUIDv7 first, so a retry
// after a lost answer is acknowledged as a duplicate, never stored twice:
//
//	c, err := client.New("https://vigil.example.com:8080", token)
//	if err != nil { ... }
//	acks, err := c.Publish(ctx, []*client.Event{{
//		Type: "auth.login.failure", Severity: client.SeverityMedium,
//		Source: "idp", User: "alice", SrcIP: "203.0.113.7", Outcome: "failure",
//	}})
//
// Subscribe from a seq; after a disconnect the subscription resumes after
// the last event delivered, with no gap and no duplicate:
//
//	err = c.Subscribe(ctx, client.SubscribeOptions{
//		Filter: client.Filter{Categories: []string{"authentication"}, MinSeverity: "high"},
//		From:   client.Cursor{Seq: 1},
//	}, func(e *client.Event) error {
//		fmt.Println(e.Seq, e.Severity, e.Type, e.User)
//		return nil // a non-nil error ends the subscription
//	})
//
// See the examples for complete programs.
package client
