package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/vigil-sec/vigil/client"
)

// Publishing one batch and reading its acknowledgements.
func ExampleClient_Publish() {
	c, err := client.New("http://127.0.0.1:8080", "vgl_example_token")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acks, err := c.Publish(ctx, []*client.Event{
		{Type: "auth.login.failure", Severity: client.SeverityMedium, Source: "idp", User: "alice", SrcIP: "203.0.113.7", Outcome: "failure"},
		{Type: "audit.query", Message: "SELECT * FROM accounts", User: "bob"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range acks {
		fmt.Println(a.ID, a.Seq, a.Duplicate)
	}
}

// Following high-severity authentication events from the start of the log,
// resuming after reconnects.
func ExampleClient_Subscribe() {
	c, err := client.New("http://127.0.0.1:8080", "vgl_example_token")
	if err != nil {
		log.Fatal(err)
	}
	opts := client.SubscribeOptions{
		Filter: client.Filter{Categories: []string{"authentication"}, MinSeverity: "high"},
		From:   client.Cursor{Seq: 1},
	}
	err = c.Subscribe(context.Background(), opts, func(e *client.Event) error {
		fmt.Println(e.Seq, e.Severity, e.Type, e.User)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Severities are ordered and encode as their names.
func ExampleSeverity() {
	s, err := client.ParseSeverity("high")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s, s > client.SeverityMedium)
	// Output: high true
}
