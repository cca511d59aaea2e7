package storage

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"
)

// LogOptions are the pair log's settings that both backends share, with
// one meaning and one set of defaults (config's storage section): how
// long pairs are kept and how many per domain, and the bounded queue
// between Log and the writer. Zero values mean the default
// (DefaultLogOptions); each backend's Options embeds them.
type LogOptions struct {
	// TTL removes pairs older than this, by their Time. Default 720h;
	// negative keeps pairs forever.
	TTL time.Duration
	// MaxPairsPerDomain keeps only the newest N pairs of each domain.
	// Default 200000; negative means no cap.
	MaxPairsPerDomain int
	// QueueSize bounds the pairs accepted by Log and not yet stored
	// (written, or acknowledged by the servers), those in a batch being
	// stored among them; past it Log drops (reason queue_full). Default
	// 65536.
	QueueSize int
	// QueueBytes bounds the memory of those pairs, by their encoded size:
	// Log drops a pair that would exceed it. A pair alone in the queue is
	// always accepted. With keep_requests on a pair carries the whole
	// request, so a count alone would not bound memory. Default 32 MiB.
	QueueBytes int64
	// BatchSize stores the queue once this many pairs wait. Default 1024.
	BatchSize int
	// FlushInterval stores waiting pairs at least this often. Default
	// 100ms.
	FlushInterval time.Duration
}

// DefaultLogOptions are the options a zero LogOptions field means.
func DefaultLogOptions() LogOptions {
	return LogOptions{
		TTL:               720 * time.Hour, // 30 days
		MaxPairsPerDomain: 200000,
		QueueSize:         65536,
		QueueBytes:        32 << 20,
		BatchSize:         1024,
		FlushInterval:     100 * time.Millisecond,
	}
}

// WithDefaults returns o with its zero fields set to the defaults, or an
// error naming the setting that is out of range.
func (o LogOptions) WithDefaults() (LogOptions, error) {
	d := DefaultLogOptions()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&o.MaxPairsPerDomain, d.MaxPairsPerDomain)
	set(&o.QueueSize, d.QueueSize)
	set(&o.BatchSize, d.BatchSize)
	if o.TTL == 0 {
		o.TTL = d.TTL
	}
	if o.QueueBytes == 0 {
		o.QueueBytes = d.QueueBytes
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = d.FlushInterval
	}
	switch {
	case o.QueueSize < 0:
		return o, fmt.Errorf("storage.queue_size: must be positive, got %d", o.QueueSize)
	case o.QueueBytes < 0:
		return o, fmt.Errorf("storage.queue_bytes: must be positive, got %d", o.QueueBytes)
	case o.BatchSize < 0:
		return o, fmt.Errorf("storage.batch_size: must be positive, got %d", o.BatchSize)
	case o.FlushInterval < 0:
		return o, fmt.Errorf("storage.flush_interval: must be positive, got %s", o.FlushInterval)
	}
	return o, nil
}

// DefaultOptions are the options a zero Options field means, Dir aside:
// the defaults of config's storage section.
func DefaultOptions() Options {
	return Options{
		LogOptions:        DefaultLogOptions(),
		RetentionInterval: 5 * time.Minute,
		RetentionRate:     20000,
		MinFreeBytes:      DefaultMinFreeBytes,
	}
}

// Options configures the pair log. Zero values mean the documented default
// (DefaultOptions).
type Options struct {
	// Dir is the Badger data directory. Required.
	Dir string
	// EncryptionKeyFile enables encryption at rest when set: an AES-256 key
	// stored as 32 raw bytes, 64 hex characters, or the base64 encoding of 32
	// bytes (a trailing newline is allowed). Default "": no encryption.
	EncryptionKeyFile string
	// SyncWrites makes every batch wait for fsync. Default false: a batch
	// written to Badger survives a process crash (kill -9) but not a power
	// loss.
	SyncWrites bool
	// LogOptions: TTL and MaxPairsPerDomain are applied by retention (by
	// the pairs' ULID time); a batch is a Badger write.
	LogOptions
	// RetentionInterval is how often retention (TTL, cap) and value-log GC
	// run. Default 5m.
	RetentionInterval time.Duration
	// RetentionRate bounds how fast retention deletes, in pairs per second,
	// so that a large excess is spread out instead of stalling the process:
	// a pass deletes no faster than this or twice the rate pairs were
	// written since the previous pass, whichever is higher (see
	// retention.go). Default 20000; negative: as fast as Badger goes.
	RetentionRate int
	// Logger receives the package's and Badger's warnings and errors.
	// Default slog.Default().
	Logger *slog.Logger
	// Registry registers the understudy_storage_* metrics when non-nil.
	// Default nil: no metrics are registered.
	Registry prometheus.Registerer
	// MinFreeBytes is the free space (on the filesystem holding Dir) below
	// which the pair log stops writing: Log drops pairs (counted as
	// disk_full), other writes return ErrDiskFull, reads go on, and
	// logging resumes by itself once MinFreeBytes plus a quarter is free
	// (see space.go). Default 256 MiB, twice the value-log file size;
	// negative: no floor (Badger's mapped files are still reserved).
	MinFreeBytes int64

	// vlogFileSize overrides valueLogFileSize; tests only.
	vlogFileSize int64
	// pace overrides retention's pacing (RetentionRate); tests only.
	pace *pacing
	// noRetentionLoop: only RunRetention runs retention; tests only.
	noRetentionLoop bool
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("storage.dir: must be set")
	}
	d := DefaultOptions()
	var err error
	if o.LogOptions, err = o.LogOptions.WithDefaults(); err != nil {
		return o, err
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = d.RetentionInterval
	}
	if o.RetentionRate == 0 {
		o.RetentionRate = d.RetentionRate
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.vlogFileSize == 0 {
		o.vlogFileSize = valueLogFileSize
	}
	switch {
	case o.MinFreeBytes == 0:
		o.MinFreeBytes = d.MinFreeBytes
	case o.MinFreeBytes < 0:
		o.MinFreeBytes = 0
	}
	if o.RetentionInterval < 0 {
		return o, fmt.Errorf("storage.retention_interval: must be positive, got %s", o.RetentionInterval)
	}
	return o, nil
}

// Badger tuning. Badger's defaults (5 memtables of 64 MB, a 256 MB block
// cache, 4 compactors, every value inline in the LSM tree) take far more
// than the 300 MB the gateway may use in all, and spend the 2 CPU cores on
// compaction. The pair log is write-mostly with ~1 KB values read back only
// by export, retention and training, so:
const (
	// memTableSize: each memtable is an arena of about 1.3x this size on the Go
	// heap (live, so the GC keeps gc_percent more beside it) plus its
	// mapped write-ahead log. With values in the value log an entry in the
	// memtable is ~150 bytes (key, value pointer, skiplist node), so 4 MB
	// holds ~25k pairs before a flush to L0: every 12 s at 2,000 pairs/s.
	// 16 MB kept ~20 MB more arena live, and gc_percent its multiple; with
	// the other memory changes of that round RSS at 2,000 req/s fell from
	// ~350 to ~290 MB and CPU per request stayed within the noise (not
	// measured alone).
	memTableSize = 4 << 20
	// numMemtables: one being written, one being flushed. More only buys
	// burst absorption we already get from the writer queue.
	numMemtables = 2
	// valueThreshold: pair values (text, ~1 KB and up) go to the value log,
	// so the LSM tree holds only keys and 12-byte pointers: compaction
	// rewrites little, the memtables stay small, and writes are one sequential
	// append. Small records (domain, label counts, meta) stay inline.
	valueThreshold = 256
	// valueLogFileSize: smaller files than the 1 GB default let value-log GC
	// reclaim the space of expired and capped pairs in finer steps.
	valueLogFileSize = 128 << 20
	// blockCacheSize: blocks are cached only when compressed or encrypted.
	// We turn compression off (keys are mostly random ULID bytes and the
	// values live in the value log, so Snappy gains little), so the cache is
	// used only with encryption, where Badger requires one. 16 MB covers the
	// key blocks of an iteration working set.
	blockCacheSize = 16 << 20
	// indexCacheSize: with encryption every table index is decrypted into
	// memory; without a cache Badger keeps all of them resident forever.
	// A bounded index cache (required with encryption) caps that.
	indexCacheSize = 16 << 20
	// numCompactors: 2 is the least Badger allows (0 disables compaction);
	// its default of 4 would compete with the gateway for 2 cores.
	numCompactors = 2
	// numLevelZeroTables/Stall: L0 tables here hold keys only and are small;
	// keep Badger's defaults for when to compact and when to stall writes.
	numLevelZeroTables      = 5
	numLevelZeroTablesStall = 15
)

func (o Options) badgerOptions(key []byte, readOnly bool) badger.Options {
	bo := badger.DefaultOptions(o.Dir).
		WithReadOnly(readOnly).
		WithLogger(badgerLogger{o.Logger.With("component", "badger")}).
		WithSyncWrites(o.SyncWrites).
		WithMemTableSize(memTableSize).
		WithNumMemtables(numMemtables).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(o.vlogFileSize).
		// A damaged value-log entry then fails its checksum before Badger
		// decodes it. Without the check a damaged entry header takes a path
		// (value.go, valueLog.Read, "Invalid read") that returns without
		// unlocking the file: the next Close waits for that lock forever.
		WithVerifyValueChecksum(true).
		WithCompression(options.None).
		WithNumCompactors(numCompactors).
		WithNumLevelZeroTables(numLevelZeroTables).
		WithNumLevelZeroTablesStall(numLevelZeroTablesStall).
		// The writer goroutine is the only writer of pair, domain and label
		// keys (under DB.mu), so Badger's conflict detection would only cost
		// memory for read sets.
		WithDetectConflicts(false).
		// Badger's metrics go to the global expvar; ours are in Prometheus.
		WithMetricsEnabled(false).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0)
	if len(key) > 0 {
		bo = bo.WithEncryptionKey(key).
			WithBlockCacheSize(blockCacheSize).
			WithIndexCacheSize(indexCacheSize)
	}
	return bo
}

// readKeyFile reads an AES-256 key: 32 raw bytes, 64 hex characters, or the
// base64 of 32 bytes, each optionally followed by a newline.
func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == 32 {
		return b, nil
	}
	t := bytes.TrimRight(b, "\r\n")
	if len(t) == 32 {
		return t, nil
	}
	t = bytes.TrimSpace(t)
	if len(t) == 64 {
		if k, err := hex.DecodeString(string(t)); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(t)); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("holds %d bytes: want 32 raw bytes, 64 hex characters or base64 of 32 bytes", len(b))
}
