// Package event owns Vigil's event model: the Event type every other package
// speaks, its categories and severities, the limits and validation applied at
// ingest, and the decoders for the three accepted body shapes (one object, a
// JSON array, NDJSON). It depends on nothing else in Vigil.
package event
