//go:build !linux

package storage

// releaseMapped is Linux-only (MADV_PAGEOUT); elsewhere the kernel alone
// decides when the value log's mapped pages leave the resident set.
func releaseMapped(string) error { return errUnsupported }
