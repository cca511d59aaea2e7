package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDiskFull is returned (wrapped) by writes refused because the
// filesystem holding the pair log is below Options.MinFreeBytes, or Badger's
// files could not be given the space they map.
var ErrDiskFull = errors.New("disk full")

// A full disk.
//
// Badger writes its value log and its write-ahead logs (memtables) through
// shared memory maps of files it creates sparse, by ftruncate to twice their
// size (ristretto z.OpenMmapFile): a page gets its disk block only when the
// write through the map first touches it. On a full filesystem that touch
// cannot be refused with an error, and the kernel sends SIGBUS, which ends
// the process. Two things keep that from happening:
//
//   - reservation: before each write, every file Badger maps for writing
//     (*.vlog, *.mem, DISCARD) is allocated in full with fallocate, so writes
//     through the map land on blocks the filesystem already gave us. The
//     value-log file being written is reserved at its mapped size, 2 x the
//     value-log file size: up to 128 MiB more on disk than written, given
//     back when Badger rotates or closes it (it truncates the file).
//   - a floor: a file Badger creates during a write, and the table files of
//     memtable flushes and compactions (written through maps as well), are
//     not reserved. No write starts with less than MinFreeBytes free, which
//     is far more than one batch, one flush or one compaction writes.
//
// Under the floor, logging pauses: Log drops pairs, counted as disk_full,
// other writes return ErrDiskFull, reads go on. Retention keeps deleting down
// to half the floor, so a disk filled by the pair log itself recovers by TTL
// and cap. The writer looks again every spaceCheckInterval and resumes once
// the floor plus a quarter is free.
//
// A spare file (spareName, spareSize) is kept in the directory while there
// is room: Close removes it when the disk is full, so that Badger can flush
// its memtable, and so does Open, so that Badger can open read-write (it
// replays and flushes the write-ahead logs and maps new files). Without the
// spare and the room, Open opens Badger read-only: the gateway reads domains
// and students and serves, and the writer reopens read-write when space
// returns.
//
// Another process filling the disk at the same moment Badger flushes or
// compacts can still beat the floor; keep the data directory on a
// filesystem of its own where that matters.

const (
	// DefaultMinFreeBytes: 2 x the value-log file size (128 MiB). The floor
	// must cover what is written before the next check without a
	// reservation: a new value-log or write-ahead-log file's first batch
	// (at most QueueBytes, 32 MiB), a memtable flush (<= 16 MiB of keys) and a
	// compaction of key-only tables (tens of MiB). A new value-log file then
	// still finds its 2 x 128 MiB mapping's worth of room to reserve most of
	// the time; when it does not, logging pauses instead of faulting.
	DefaultMinFreeBytes = 2 * valueLogFileSize

	spareName = "understudy.spare"
	// spareSize covers Badger's writes on open and close: flushing up to
	// numMemtables memtables of memTableSize (tables of keys) and the
	// headers of a new value log and write-ahead log.
	spareSize = 4 * memTableSize
	// openSlack is what a read-write open needs besides flushing the
	// write-ahead logs it finds.
	openSlack = 8 << 20

	spaceCheckInterval = time.Second
)

// space watches the filesystem holding the pair log.
type space struct {
	dir   string
	floor int64 // Options.MinFreeBytes; 0: no floor
	log   func(msg string, args ...any)

	paused atomic.Bool // logging paused for disk space; Log drops

	mu          sync.Mutex
	reserved    map[string]bool // files fallocated in full
	noFallocate bool            // the filesystem cannot reserve: said once
	pausedAt    time.Time
	dropsAt     int64 // disk_full drops counted when the pause began
}

// free returns the bytes available to an unprivileged user on dir's
// filesystem, or -1 where that cannot be read.
func (s *space) free() int64 {
	n, err := diskFree(s.dir)
	if err != nil {
		return -1
	}
	return n
}

// room reports whether a write of about n bytes may go to Badger with
// floor bytes left: it reserves every file Badger maps for writing, then
// checks the free space. It returns an ErrDiskFull error saying why not.
func (s *space) room(n, floor int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reserve(); err != nil {
		return err
	}
	if floor <= 0 {
		return nil
	}
	free := s.free()
	if free >= 0 && free < floor+n {
		return fmt.Errorf("%w: %s free on the filesystem of %s, the floor is %s (storage MinFreeBytes)",
			ErrDiskFull, mib(free), s.dir, mib(floor))
	}
	return nil
}

// reserve allocates in full every file in dir that Badger writes through a
// memory map, once per file. Caller holds s.mu.
func (s *space) reserve() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("reserving space for the pair log: %w", err)
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if !(strings.HasSuffix(name, ".vlog") || strings.HasSuffix(name, ".mem") || name == "DISCARD") {
			continue
		}
		seen[name] = true
		if s.reserved[name] || s.noFallocate {
			continue
		}
		err := allocate(filepath.Join(s.dir, name))
		switch {
		case err == nil:
			s.reserved[name] = true
		case errors.Is(err, errUnsupported):
			s.noFallocate = true
			s.log("pair log: this filesystem cannot reserve space for Badger's memory-mapped files (fallocate); "+
				"only the free-space floor guards against a full disk", "dir", s.dir, "err", err)
		case errors.Is(err, os.ErrNotExist):
			// Badger removed it meanwhile.
		default:
			return fmt.Errorf("%w: reserving %s: %v", ErrDiskFull, name, err)
		}
	}
	for name := range s.reserved {
		if !seen[name] {
			delete(s.reserved, name)
		}
	}
	return nil
}

// allocate gives every byte of the file at path a disk block, keeping its
// size and contents.
func allocate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	return fallocate(f, fi.Size())
}

// spare is the path of the spare file.
func (s *space) spare() string { return filepath.Join(s.dir, spareName) }

// releaseSpare removes the spare file, giving its room to Badger. It
// reports whether there was one.
func (s *space) releaseSpare() bool {
	err := os.Remove(s.spare())
	return err == nil
}

// keepSpare creates the spare file when it is missing and the floor still
// holds with it.
func (s *space) keepSpare() {
	if fi, err := os.Stat(s.spare()); err == nil && fi.Size() >= spareSize {
		return
	}
	if free := s.free(); free < 0 || free < s.floor+spareSize {
		return
	}
	f, err := os.OpenFile(s.spare(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	err = fallocate(f, spareSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// No spare where the filesystem cannot reserve (or is full after
		// all): a sparse one would give nothing back.
		_ = os.Remove(s.spare())
	}
}

// walBytes bounds what a read-write open writes for the write-ahead logs
// (memtables) in dir: it replays each, truncating it to what it holds (which
// frees its reserved tail), and flushes it to a table of at most a
// memtable's size.
func walBytes(dir string) int64 {
	var n int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".mem") {
			if fi, err := e.Info(); err == nil {
				n += min(fi.Size(), memTableSize)
			}
		}
	}
	return n
}

func mib(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// openMode decides how Open opens Badger: read-write when the filesystem
// has room for what a read-write open writes (flushing the write-ahead logs
// it finds, new files' headers), after removing the spare file if that is
// what it takes; read-only otherwise. A directory without a pair log yet
// cannot be created read-only: that is an error.
func (s *space) openMode(log interface{ Warn(string, ...any) }) (readOnly bool, err error) {
	free := s.free()
	need := walBytes(s.dir) + openSlack
	if free < 0 || free >= need {
		return false, nil
	}
	if s.releaseSpare() {
		log.Warn("pair log: disk almost full; removed the spare file so that Badger can open read-write",
			"dir", s.dir, "free", mib(s.free()))
		if free = s.free(); free >= need {
			return false, nil
		}
	}
	if _, err := os.Stat(filepath.Join(s.dir, "MANIFEST")); err != nil {
		return false, fmt.Errorf("%w: %s free on the filesystem of %s, not enough to create a pair log (%s)",
			ErrDiskFull, mib(free), s.dir, mib(need))
	}
	log.Warn("pair log: disk full; opening read-only until space returns (domains and students can be read, pairs are dropped)",
		"dir", s.dir, "free", mib(free), "need", mib(need))
	return true, nil
}

// roomFor is space.room for a write of about n bytes: ErrDiskFull when
// Badger is open read-only.
func (db *DB) roomFor(n, floor int64) error {
	if db.readOnly {
		return fmt.Errorf("%w: the pair log was opened read-only for lack of space; it reopens read-write when space returns", ErrDiskFull)
	}
	return db.space.room(n, floor)
}

// pause stops logging for disk space, saying so once.
func (db *DB) pause(err error) {
	db.space.mu.Lock()
	defer db.space.mu.Unlock()
	if db.space.paused.Swap(true) {
		return
	}
	db.space.pausedAt = time.Now()
	db.space.dropsAt = db.diskDrops.Load()
	db.log.Warn("pair log paused: disk almost full; pairs are dropped (understudy_storage_pairs_dropped_total{reason=\"disk_full\"}) "+
		"and state writes refused until space returns; serving goes on",
		"dir", db.opts.Dir, "free", mib(db.space.free()), "min_free", mib(db.space.floor), "err", err)
}

// resume restarts logging, saying so once.
func (db *DB) resume() {
	db.space.mu.Lock()
	defer db.space.mu.Unlock()
	if !db.space.paused.Swap(false) {
		return
	}
	db.log.Info("pair log resumed: disk space is back",
		"dir", db.opts.Dir, "free", mib(db.space.free()),
		"paused_for", time.Since(db.space.pausedAt).Round(time.Second).String(),
		"dropped", db.diskDrops.Load()-db.space.dropsAt)
}

func (db *DB) dropDiskFull(n int) {
	db.diskDrops.Add(int64(n))
	db.q.Dropped(reasonDiskFull).Add(float64(n))
}

// checkSpace runs on the writer every spaceCheckInterval: while paused it
// resumes once the floor plus a quarter is free (reopening Badger
// read-write first if it was opened read-only); otherwise it keeps the
// spare file.
func (db *DB) checkSpace() {
	if !db.space.paused.Load() {
		db.space.keepSpare()
		return
	}
	floor := db.space.floor + db.space.floor/4
	if db.readOnly {
		if free := db.space.free(); free >= 0 && free < floor+walBytes(db.opts.Dir)+openSlack {
			return
		}
		if err := db.reopenReadWrite(); err != nil {
			db.log.Error("pair log: reopening read-write after the disk had room again", "dir", db.opts.Dir, "err", err)
			return
		}
	}
	if err := db.roomFor(0, floor); err != nil {
		return
	}
	db.resume()
	db.space.keepSpare()
}

// reopenReadWrite replaces the read-only Badger opened on a full disk with a
// read-write one. It runs on the writer goroutine, the only writer, and
// holds lifeMu so that no reader or retention pass uses Badger meanwhile.
func (db *DB) reopenReadWrite() error {
	db.lifeMu.Lock()
	defer db.lifeMu.Unlock()
	if db.bdbClosed || !db.readOnly {
		return nil
	}
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("closing the read-only database: %w", err)
	}
	bdb, err := openBadger(db.opts.badgerOptions(db.key, false))
	if err != nil {
		err = fmt.Errorf("opening read-write: %w", explainOpenError(err, db.opts.EncryptionKeyFile))
		if bdb, rerr := openBadger(db.opts.badgerOptions(db.key, true)); rerr == nil {
			db.bdb = bdb
			return err
		}
		db.bdbClosed = true
		return fmt.Errorf("%w; reopening read-only failed too, the pair log is closed", err)
	}
	db.bdb, db.readOnly = bdb, false
	db.mu.Lock()
	defer db.mu.Unlock()
	db.domains, db.nLabels = make(map[string]*domainEntry), 0
	if err := db.loadDomains(); err != nil {
		return fmt.Errorf("reloading domains: %w", err)
	}
	return nil
}
