//go:build !unix

package gateway

// openFileLimit is unknown off Unix.
func openFileLimit() uint64 { return 0 }
