//go:build unix

package gateway

import "syscall"

// openFileLimit returns the process's soft limit on open files (which Go
// raises to the hard limit at start), or 0 when unknown.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 1<<62 {
		return 0
	}
	return rl.Cur
}
