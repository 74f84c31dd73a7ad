package server

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/transport/graphql"
)

// fill sets every exported field of the struct v points to a distinct
// non-zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !v.Type().Field(i).IsExported() {
			continue
		}
		name := v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			f.SetString("v-" + name)
		case reflect.Int, reflect.Int64:
			f.SetInt(int64(10 + i))
		case reflect.Uint64:
			f.SetUint(uint64(100 + i))
		case reflect.Float64:
			f.SetFloat(0.5 + float64(i))
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.String {
				f.Set(reflect.ValueOf([]string{name + "-1", name + "-2"}))
			} else {
				f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			}
		case reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": name}))
		case reflect.Struct:
			if f.Type() == reflect.TypeOf(time.Time{}) {
				f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, i, 0, time.UTC)))
			}
		default:
			t.Fatalf("fill: field %s of kind %s: extend the test", name, f.Kind())
		}
	}
}

// TestToGQLCoversEveryField: the explicit conversion sets every field of
// graphql.Detection and gives what the shared SPEC 6 JSON shape gives (the
// old per-item JSON round trip), field by field. A field added to either
// type without the conversion fails here.
func TestToGQLCoversEveryField(t *testing.T) {
	var d detect.Detection
	fill(t, reflect.ValueOf(&d).Elem())
	got := toGQL(d)

	gv := reflect.ValueOf(got)
	for i := 0; i < gv.NumField(); i++ {
		if gv.Field(i).IsZero() {
			t.Errorf("graphql.Detection.%s not set by toGQL", gv.Type().Field(i).Name)
		}
	}

	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var want graphql.Detection
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	wv := reflect.ValueOf(want)
	for i := 0; i < wv.NumField(); i++ {
		name := wv.Type().Field(i).Name
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if gt, ok := g.(time.Time); ok {
			if !gt.Equal(w.(time.Time)) {
				t.Errorf("%s: %v, JSON shape says %v", name, g, w)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: %#v, JSON shape says %#v", name, g, w)
		}
	}

	// A zero confidence is still present (detect always sends it).
	if c := toGQL(detect.Detection{}).Confidence; c == nil || *c != 0 {
		t.Errorf("zero confidence: %v", c)
	}
}
