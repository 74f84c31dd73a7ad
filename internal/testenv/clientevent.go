package testenv

import (
	"encoding/json"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/event"
)

// ClientEvent converts an event made in-process (the demo generator) to
// the public client's own type (issue 14: the client no longer aliases
// internal/event), through the wire format they share.
func ClientEvent(e *event.Event) *client.Event {
	b, err := json.Marshal(e)
	if err != nil {
		panic("testenv: encode event: " + err.Error())
	}
	var c client.Event
	if err := json.Unmarshal(b, &c); err != nil {
		panic("testenv: decode as client.Event: " + err.Error())
	}
	return &c
}
