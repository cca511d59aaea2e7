//go:build !race

package shadow

const simUnderRace = false
