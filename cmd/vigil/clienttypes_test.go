package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/client"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/filter"
)

// serverEvent is the reverse of toClientEvent, for tests that run the
// server's evaluator over events the CLI made.
func serverEvent(c *client.Event) *event.Event {
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	var e event.Event
	if err := json.Unmarshal(b, &e); err != nil {
		panic(err)
	}
	return &e
}

// fillAll sets every exported field of the struct v points to a non-zero
// value valid on the wire.
func fillAll(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		sf := v.Type().Field(i)
		if !sf.IsExported() {
			continue
		}
		f := v.Field(i)
		switch {
		case sf.Name == "Category":
			f.SetString("authentication")
		case sf.Name == "Severity" && f.Kind() == reflect.Uint8:
			f.SetUint(3)
		case sf.Name == "Data":
			f.SetBytes([]byte(`{"k":1}`))
		case f.Kind() == reflect.String:
			f.SetString("v-" + sf.Name)
		case f.Kind() == reflect.Uint64:
			f.SetUint(uint64(40 + i))
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.ValueOf([]string{sf.Name}))
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Float64:
			x := 0.25 + float64(i)
			f.Set(reflect.ValueOf(&x))
		case f.Type() == reflect.TypeOf(time.Time{}):
			f.Set(reflect.ValueOf(time.Date(2026, 11, 30, 12, 0, i, 0, time.UTC)))
		default:
			t.Fatalf("fillAll: field %s (%s): extend the test", sf.Name, f.Type())
		}
	}
}

// TestClientConversionsKeepTheWire: the conversions to the client's own
// types copy every field: a fully set server event or filter encodes to
// the same JSON once converted.
func TestClientConversionsKeepTheWire(t *testing.T) {
	var e event.Event
	fillAll(t, reflect.ValueOf(&e).Elem())
	want, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(toClientEvent(&e))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("event:\n got %s\nwant %s", got, want)
	}
	if back := serverEvent(toClientEvent(&e)); back.Severity != e.Severity || back.Category != e.Category {
		t.Fatalf("round trip: %v %v", back.Severity, back.Category)
	}

	var f filter.Filter
	fillAll(t, reflect.ValueOf(&f).Elem())
	wantF, _ := json.Marshal(f)
	gotF, _ := json.Marshal(toClientFilter(f))
	if string(gotF) != string(wantF) {
		t.Fatalf("filter:\n got %s\nwant %s", gotF, wantF)
	}
}
