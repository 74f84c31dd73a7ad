//go:build !race

package hostile

const gqlRace = false
