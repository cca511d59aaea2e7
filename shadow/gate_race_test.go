//go:build race

package shadow

// simUnderRace: the race detector slows Add about tenfold, so the
// simulations run fewer streams under it.
const simUnderRace = true
