//go:build !linux

package shadow

// threadCPU is Linux-only; elsewhere scoring's CPU time goes uncounted.
func threadCPU() (int64, bool) { return 0, false }
