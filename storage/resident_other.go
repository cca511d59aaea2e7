//go:build !linux

package storage

import "errors"

// releaseMapped is Linux-only (MADV_PAGEOUT); elsewhere the kernel alone
// decides when the value log's mapped pages leave the resident set.
func releaseMapped(string) (int, error) { return 0, errUnsupported }

var errUnsupported = errors.New("not supported on this platform")
