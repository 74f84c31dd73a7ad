package store

// WithRebuildGate returns cfg with its dedup rebuild held until gate is
// closed (for the external tests of this package).
func WithRebuildGate(cfg Config, gate <-chan struct{}) Config {
	cfg.rebuildGate = gate
	return cfg
}
