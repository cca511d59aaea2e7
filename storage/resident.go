package storage

import (
	"errors"
	"path/filepath"
	"time"
)

// Keeping the value log out of the resident set (see releaseMapped).
const (
	// releaseEvery wakes the releaser after this many bytes of the value
	// log written or read through its mapping (Pairs, retention), so that
	// the pages of a fast writer leave the resident set in ~8 MB steps
	// (every 4 s at 2,000 pairs/s of ~1 KB; 32 MB steps kept up to 40 MB
	// more resident).
	releaseEvery = 8 << 20
	// releaseInterval also wakes it on a clock, for pages that exports,
	// training and value-log GC fault back in by reading. Retention wakes
	// it itself.
	releaseInterval = 10 * time.Second
)

// errUnsupported is releaseMapped's error where the platform cannot do it.
var errUnsupported = errors.New("not supported on this platform")

// noteMapped counts n bytes of the value log written or read through its
// mapping and wakes the releaser every releaseEvery bytes.
func (db *DB) noteMapped(n int) {
	if db.unreleased.Add(int64(n)) < releaseEvery {
		return
	}
	db.unreleased.Store(0)
	db.wakeReleaser()
}

// wakeReleaser has the releaser run now.
func (db *DB) wakeReleaser() {
	select {
	case db.releaseNow <- struct{}{}:
	default:
	}
}

// runReleaser keeps the pages Badger has mapped for the value log out of
// the process's resident set, so that RSS stays bounded however many pairs
// are stored (measured in bench_test.go's TestRSSMillionPairs).
func (db *DB) runReleaser() {
	defer db.wg.Done()
	dir, err := filepath.Abs(db.opts.Dir)
	if err == nil {
		dir, err = filepath.EvalSymlinks(dir)
	}
	if err != nil {
		db.log.Warn("pair log: cannot resolve the data directory; value-log pages stay resident", "dir", db.opts.Dir, "err", err)
		return
	}
	t := time.NewTicker(releaseInterval)
	defer t.Stop()
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-db.releaseNow:
		case <-t.C:
		}
		if err := releaseMapped(dir); err != nil {
			if !errors.Is(err, errUnsupported) {
				db.log.Warn("pair log: cannot release value-log pages; they stay resident until the kernel reclaims them", "err", err)
			}
			return
		}
	}
}
