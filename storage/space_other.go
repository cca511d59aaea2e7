//go:build !linux

package storage

import "os"

// diskFree and fallocate are Linux-only here; elsewhere the pair log has
// neither a free-space floor nor reservations.
func diskFree(string) (int64, error) { return 0, errUnsupported }

func fallocate(*os.File, int64) error { return errUnsupported }
