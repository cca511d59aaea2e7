package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"
)

var (
	// ErrNotFound is returned for a domain that has never been logged.
	ErrNotFound = errors.New("not found")
	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("pair log closed")

	errWrongKey = errors.New("wrong encryption key")
)

// Pair is one teacher answer, as logged.
type Pair struct {
	ID               string          // ULID, set by Log if empty; its time orders pairs and ages them for TTL
	Time             time.Time       // set by Log if zero (to the ID's time when an ID is given)
	Domain           string          // 1-64 chars of [A-Za-z0-9._-]
	Model            string          // model the client asked for
	Input            string          // the student's input text (non-system message text)
	System           string          // system prompt text
	Messages         json.RawMessage // the request's messages array, when kept (may be nil)
	Answer           string          // the teacher's raw answer text
	Label            string          // normalized label (computed by the caller)
	PromptTokens     int
	CompletionTokens int
	TeacherLatency   time.Duration
	Stream           bool
	// Deferred: a serving student was asked first and deferred to the
	// teacher, unsampled. While a student serves, the teacher answers
	// mostly what it is unsure of, so such pairs are not a uniform sample
	// of the traffic: they train, but do not back-test.
	Deferred bool
}

// queued is a pair accepted by Log with its parsed ID.
type queued struct {
	p     Pair
	id    ulid.ULID
	given bool  // the caller set the ID: it may repeat one already stored
	size  int64 // its share of Options.QueueBytes
}

// DB is the pair log: an embedded Badger database written by one batching
// writer goroutine, with a retention goroutine. It is safe for concurrent use.
type DB struct {
	opts  Options
	bdb   *badger.DB
	log   *slog.Logger
	m     *metrics
	now   func() time.Time
	grace time.Duration // added to TTL for Badger's own expiry, see ttlExpiry

	// q takes pairs off the request path for the writer and reports its
	// progress to Flush and QueueLen.
	q *Queue[*queued]

	// mu guards the domain cache and serializes every write of domain and
	// label records (writer batches, retention, updateDomain), so that the
	// cache always equals what is committed.
	mu      sync.Mutex
	domains map[string]*domainEntry
	nLabels int // label counts cached across all domains
	// changes orders the domains by their last change, for ChangedSince.
	changes changeLog

	retMu sync.Mutex // one retention pass at a time
	// Retention's pacing, and when the last pass began with how many pairs
	// written then (guarded by retMu).
	pace        pacing
	lastPass    time.Time
	lastWritten uint64

	ctx    context.Context // cancelled by Close: stops the loops and readers
	cancel context.CancelFunc
	wg     sync.WaitGroup

	unreleased atomic.Int64  // value bytes written since the releaser last ran
	releaseNow chan struct{} // wakes runReleaser

	// lifeMu: readers and retention hold it shared; Close takes it to close
	// Badger, the writer to reopen it read-write (see reopenReadWrite).
	lifeMu    sync.RWMutex
	bdbClosed bool
	readOnly  bool // Badger is open read-only: the disk was full at Open

	key       []byte // encryption key, for reopening
	space     *space
	diskDrops atomic.Int64 // pairs dropped as disk_full, for the resume log line
	closeOnce sync.Once
	closeErr  error

	solo solo // the replica set of one: replicas.go
}

type domainEntry struct {
	rec    domainRecord
	labels map[string]int64 // cached subset of the label counts, equal to the stored ones
}

// maxCachedLabels bounds the label counts kept in memory. A classification
// domain has at most hundreds of labels; an open-ended one may have one per
// pair, and those are read back from Badger on a miss instead.
const maxCachedLabels = 1 << 16

// Open opens (or creates) the pair log in opts.Dir and starts its writer and
// retention loops. It refuses a damaged directory with ErrDamaged (see
// damage.go). On a full disk it opens all the same, with logging paused:
// read-only when Badger cannot open read-write (see space.go).
func Open(opts Options) (*DB, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("opening pair log: %w", err)
	}
	if fi, err := os.Stat(o.Dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("opening pair log at %s: not a directory", o.Dir)
	}
	var key []byte
	if o.EncryptionKeyFile != "" {
		key, err = readKeyFile(o.EncryptionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("opening pair log at %s: reading encryption key file %s: %w", o.Dir, o.EncryptionKeyFile, err)
		}
	}
	if err := checkDir(o.Dir); err != nil {
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
	}
	sp := &space{dir: o.Dir, floor: o.MinFreeBytes, reserved: make(map[string]bool), log: o.Logger.Warn}
	readOnly, err := sp.openMode(o.Logger)
	if err != nil {
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
	}
	bdb, err := openBadger(o.badgerOptions(key, readOnly))
	if err != nil && readOnly {
		return nil, fmt.Errorf("opening pair log at %s: %w: %s free, too little to open read-write, and read-only failed: %v",
			o.Dir, ErrDiskFull, mib(sp.free()), explainOpenError(err, o.EncryptionKeyFile))
	}
	if err != nil {
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, explainOpenError(err, o.EncryptionKeyFile))
	}
	db := &DB{
		opts:       o,
		bdb:        bdb,
		log:        o.Logger,
		now:        time.Now,
		grace:      max(time.Hour, 3*o.RetentionInterval),
		domains:    make(map[string]*domainEntry),
		releaseNow: make(chan struct{}, 1),
		readOnly:   readOnly,
		key:        key,
		space:      sp,
		pace:       defaultPacing(o.RetentionRate),
	}
	if o.pace != nil {
		db.pace = *o.pace
	}
	db.q = NewQueue(QueueOptions[*queued]{
		Size:      o.QueueSize,
		Bytes:     o.QueueBytes,
		BatchSize: o.BatchSize,
		Item: func(p Pair, id ulid.ULID, given bool) (*queued, int64) {
			q := &queued{p: p, id: id, given: given}
			// The encoded size plus the Pair struct and its ULID, roughly.
			q.size = int64(pairSize(&q.p)) + 256
			return q, q.size
		},
		Accepted: func(q *queued, seq uint64) { db.changes.mark(q.p.Domain, seq) },
		Reasons:  []Reason{{reasonDiskFull, "logging paused under storage MinFreeBytes"}},
	})
	if err := db.checkFormat(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
	}
	if err := db.loadDomains(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
	}
	if !readOnly {
		if err := db.migrateRoutes(); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
		}
	}
	db.m = newMetrics(sp)
	if o.Registry != nil {
		if err := db.q.Register(o.Registry, db.m.collectors()...); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("opening pair log at %s: %w", o.Dir, err)
		}
	}
	if readOnly {
		db.pause(fmt.Errorf("%w: opened read-only, with %s free on the filesystem of %s", ErrDiskFull, mib(sp.free()), o.Dir))
	} else if err := db.roomFor(0, sp.floor); err != nil {
		db.pause(err)
	} else {
		sp.keepSpare()
	}
	db.ctx, db.cancel = context.WithCancel(context.Background())
	db.wg.Add(2)
	go db.runWriter()
	go db.runReleaser()
	if !o.noRetentionLoop {
		db.wg.Add(1)
		go db.runRetention()
	}
	return db, nil
}

// openBadger opens Badger, turning a panic on a damaged directory into an
// error.
func openBadger(bo badger.Options) (bdb *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, err = nil, fmt.Errorf("badger panicked: %v (damaged or foreign data directory?)", r)
		}
	}()
	// Check the key against the key registry first, read-only. badger.Open
	// finds a wrong key only after it started goroutines that its error path
	// never stops (v4.9.6: monitorCache, the allocator pool), so each failed
	// attempt would leak them.
	kr, err := badger.OpenKeyRegistry(badger.KeyRegistryOptions{
		Dir:           bo.Dir,
		ReadOnly:      true,
		EncryptionKey: bo.EncryptionKey,
	})
	if err != nil {
		return nil, err
	}
	if err := kr.Close(); err != nil {
		return nil, err
	}
	return badger.Open(bo)
}

func explainOpenError(err error, keyFile string) error {
	msg := err.Error()
	switch {
	case errors.Is(err, badger.ErrEncryptionKeyMismatch) || strings.Contains(msg, badger.ErrEncryptionKeyMismatch.Error()):
		if keyFile == "" {
			return fmt.Errorf("%w: none given, and the data is encrypted (set storage.encryption_key_file) or its KEYREGISTRY is damaged", errWrongKey)
		}
		return fmt.Errorf("%w (storage.encryption_key_file %s)", errWrongKey, keyFile)
	case strings.Contains(msg, "bad magic") || strings.Contains(msg, "MANIFEST") || strings.Contains(msg, "manifest"):
		return fmt.Errorf("data directory is damaged or was not written by understudy: %w", err)
	}
	return err
}

// checkFormat writes the format marker into a new database and refuses a
// Badger database written by something else.
func (db *DB) checkFormat() error {
	var found, empty bool
	var val []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyFormat))
		if err == nil {
			found = true
			val, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading format marker: %w", err)
	}
	switch {
	case found && string(val) != formatVersion:
		return fmt.Errorf("unsupported format %q (want %q)", val, formatVersion)
	case found:
		return nil
	case !empty:
		return errors.New("data directory holds a Badger database not written by understudy")
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyFormat), []byte(formatVersion))
	}); err != nil {
		return fmt.Errorf("writing format marker: %w", err)
	}
	return nil
}

func (db *DB) loadDomains() error {
	return db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDomain), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[len(prefixDomain):])
			var rec domainRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return fmt.Errorf("loading domain %s: %w", name, err)
			}
			db.domains[name] = &domainEntry{rec: rec}
		}
		return nil
	})
}

// Log enqueues p for the writer without blocking. It returns false when the
// pair is dropped: the queue is full, the log is closed, logging is paused
// for disk space, or the pair is invalid (bad domain name or ID); each is
// counted in understudy_storage_pairs_dropped_total. A pair whose
// caller-given ID is already stored is dropped later, by the writer (reason
// duplicate).
func (db *DB) Log(p Pair) bool {
	if db.space.paused.Load() {
		db.dropDiskFull(1)
		return false
	}
	return db.q.Log(p)
}

// QueueLen returns the number of pairs accepted by Log and not yet written.
func (db *DB) QueueLen() int { return db.q.Len() }

// Flush waits until every pair enqueued before the call has been written to
// Badger. It returns the error of a failed batch among them, if any.
func (db *DB) Flush(ctx context.Context) error { return db.q.Flush(ctx) }

// Close stops accepting pairs, writes everything queued, stops the loops and
// closes Badger. It is safe to call more than once.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.q.Close()
		db.cancel()
		db.wg.Wait()

		db.lifeMu.Lock()
		var err error
		if !db.bdbClosed {
			db.bdbClosed = true
			if free := db.space.free(); !db.readOnly && (db.space.paused.Load() || free >= 0 && free < db.space.floor) && db.space.releaseSpare() {
				db.log.Warn("pair log: disk almost full; removed the spare file so that Badger can flush its memtable on close",
					"dir", db.opts.Dir, "free", mib(db.space.free()))
			}
			err = db.bdb.Close()
		}
		db.lifeMu.Unlock()
		if db.opts.Registry != nil {
			db.q.Unregister(db.opts.Registry, db.m.collectors()...)
		}
		if err != nil {
			db.closeErr = fmt.Errorf("closing pair log at %s: %w", db.opts.Dir, err)
		}
	})
	return db.closeErr
}

// acquire guards a read against a concurrent Close; release must follow.
func (db *DB) acquire() error {
	db.lifeMu.RLock()
	if db.bdbClosed {
		db.lifeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) release() { db.lifeMu.RUnlock() }
