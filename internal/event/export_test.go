package event

// CheckStrict exposes the strictness pass to the external benchmarks.
var CheckStrict = checkStrict

// EventFieldBit exposes the field table to TestEventFieldBits.
var EventFieldBit = eventFieldBit
