package event

// Limits bound what one producer request may contain (SPEC 2). They are
// configurable; DefaultLimits holds the SPEC defaults.
type Limits struct {
	MaxEventBytes int // one encoded event
	MaxBatchCount int // events in one request
	MaxBatchBytes int // bytes in one request body
	MaxStringLen  int // any string value, top level or inside data
	MaxDataDepth  int // nesting depth inside data
}

// DefaultLimits returns the SPEC 2 defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxEventBytes: 64 << 10,
		MaxBatchCount: 10_000,
		MaxBatchBytes: 16 << 20,
		MaxStringLen:  8 << 10,
		MaxDataDepth:  32,
	}
}
