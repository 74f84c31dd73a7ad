//go:build race

package hostile

// gqlRace: the race detector slows the store's reads ~10×, and a read
// batch already in flight finishes before it sees the deadline.
const gqlRace = true
