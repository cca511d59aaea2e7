package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/oklog/ulid/v2"
)

// Retention. A pair is removed by TTL when its ULID time is older than
// Options.TTL, and by the cap when its domain holds more than
// MaxPairsPerDomain newer pairs. Either way the pair's key is deleted in the
// same Badger transaction that decrements its domain's pair count and its
// label's count, so the counts always equal what Pairs iterates.
//
// Badger's own TTL is set a grace period (max(1h, 3*RetentionInterval))
// beyond Options.TTL: it is a backstop that bounds the disk should retention
// stop running, not the mechanism. If it does fire first (the process was
// down longer than the grace), retention still finds the expired entries —
// it iterates with AllVersions, which shows them until a compaction drops
// them — and counts them.
//
// Pacing. A pass deletes in chunks of at most retentionChunk pairs, one
// transaction each, and holds only one chunk's keys at a time. After each
// chunk, before the next (of whichever domain) or value-log GC, it pauses
// for the longest of: retentionPause; the time the chunk took, so that
// deleting takes at most half of the time and slows down when the machine
// is busy; and what keeps it under Options.RetentionRate pairs per second
// (20,000 by default) or twice the rate pairs were written since the
// previous pass, whichever is higher, so that it deletes faster than the
// log grows as long as a chunk takes less than a quarter of its slot
// (1,000 pairs take 5-10 ms here, the slot at 20,000/s is 50 ms). A pass
// deletes the excess it found when it began, however long that takes; Close
// ends it at its next pause. Deleting everything at once instead (475,000
// pairs in 3-4 s) kept a core and the disk busy and stalled the gateway,
// see TestRetentionStall. Value-log GC, which reads and rewrites a whole
// value-log file per call, pauses after each call for as long as it took,
// and at least retentionGCPause. The value-log pages that reading labels
// and GC fault in are released as the writer's are (resident.go).

const (
	// retentionChunk: pairs deleted per transaction.
	retentionChunk = 1000
	// retentionPause: the least pause between chunks.
	retentionPause = 5 * time.Millisecond
	// retentionGCPause: the least pause between value-log GC calls.
	retentionGCPause = time.Second
)

// pacing is how retention paces its work; Open sets it from Options, tests
// replace it (Options.pace).
type pacing struct {
	chunk   int           // pairs per transaction
	rate    float64       // pairs per second at most; 0: not paced
	pause   time.Duration // between chunks, at least
	gcPause time.Duration // between value-log GC calls, at least
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
}

func defaultPacing(rate int) pacing {
	p := pacing{chunk: retentionChunk, rate: float64(rate), pause: retentionPause, gcPause: retentionGCPause,
		now: time.Now, sleep: sleepCtx}
	if rate < 0 {
		p.rate, p.pause, p.gcPause = 0, 0, 0
	}
	return p
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// pacer paces one pass: the pause a chunk earns is slept before the next
// chunk, of whichever domain, or before value-log GC.
type pacer struct {
	pacing
	owe time.Duration
}

// chunkDone records that a chunk of n pairs, begun at start, is deleted.
func (pc *pacer) chunkDone(n int, start time.Time) {
	if pc.rate <= 0 {
		return
	}
	took := pc.now().Sub(start)
	pc.owe = max(pc.pause, took, time.Duration(float64(n)/pc.rate*float64(time.Second))-took)
}

// wait sleeps what the last chunk earned.
func (pc *pacer) wait(ctx context.Context) error {
	d := pc.owe
	pc.owe = 0
	if d <= 0 {
		return ctx.Err()
	}
	return pc.sleep(ctx, d)
}

// runRetention is the retention goroutine. Its first pass waits
// min(RetentionInterval, 30s) after Open, to catch up after downtime without
// slowing start-up.
func (db *DB) runRetention() {
	defer db.wg.Done()
	t := time.NewTimer(min(db.opts.RetentionInterval, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-db.ctx.Done():
			return
		case <-t.C:
		}
		if err := db.RunRetention(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
			db.log.Error("pair log retention", "err", err)
		}
		t.Reset(db.opts.RetentionInterval)
	}
}

// RunRetention runs one pass of TTL, cap and value-log GC. The retention
// loop calls it every RetentionInterval. On a full disk it deletes while at
// least half of Options.MinFreeBytes is free (deleting writes a little), and
// not at all while Badger is open read-only.
func (db *DB) RunRetention() error {
	if err := db.acquire(); err != nil {
		return fmt.Errorf("running retention: %w", err)
	}
	defer db.release()
	return db.retention(db.ctx)
}

func (db *DB) retention(ctx context.Context) error {
	db.retMu.Lock()
	defer db.retMu.Unlock()
	if db.readOnly {
		return nil
	}
	pc := &pacer{pacing: db.pace}
	// Never slower than twice the rate pairs came in since the last pass.
	began, written := pc.now(), db.q.doneA.Load()
	if el := began.Sub(db.lastPass).Seconds(); !db.lastPass.IsZero() && el > 0 && pc.rate > 0 {
		pc.rate = max(pc.rate, 2*float64(written-db.lastWritten)/el)
	}
	db.lastPass, db.lastWritten = began, written

	db.mu.Lock()
	names := make([]string, 0, len(db.domains))
	for name := range db.domains {
		names = append(names, name)
	}
	db.mu.Unlock()
	sort.Strings(names)

	var errs []error
	now := db.now()
	for _, name := range names {
		if db.opts.TTL > 0 {
			cutoff := ulid.Timestamp(now.Add(-db.opts.TTL))
			if err := db.deleteOldest(ctx, pc, name, cutoff, -1, reasonTTL); err != nil {
				errs = append(errs, fmt.Errorf("expiring pairs of %s: %w", name, err))
			}
		}
		if db.opts.MaxPairsPerDomain > 0 {
			db.mu.Lock()
			excess := db.domains[name].rec.Pairs - int64(db.opts.MaxPairsPerDomain)
			db.mu.Unlock()
			if excess > 0 {
				if err := db.deleteOldest(ctx, pc, name, 0, excess, reasonCap); err != nil {
					errs = append(errs, fmt.Errorf("capping pairs of %s: %w", name, err))
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if err := db.gcValueLog(ctx, pc); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("running retention: %w", errors.Join(errs...))
	}
	return nil
}

// gcValueLog reclaims value-log files that are at least half garbage, until
// Badger finds none. Each call rewrites one file, reading all of it through
// Badger's mapping; the pages are released and the next call waits (see
// Pacing above).
func (db *DB) gcValueLog(ctx context.Context, pc *pacer) error {
	for ctx.Err() == nil {
		if err := pc.wait(ctx); err != nil {
			return err
		}
		if err := db.roomFor(0, db.space.floor/2); err != nil {
			return fmt.Errorf("collecting value log garbage: %w", err)
		}
		start := pc.now()
		err := db.bdb.RunValueLogGC(0.5)
		switch {
		case err == nil:
			db.wakeReleaser()
			if pc.rate > 0 {
				pc.owe = max(pc.gcPause, pc.now().Sub(start))
			}
			continue
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			return nil
		default:
			return fmt.Errorf("collecting value log garbage: %w", err)
		}
	}
	return nil
}

type victim struct {
	key   []byte
	label string
	ok    bool // label was read
}

// deleteOldest deletes the oldest pairs of domain: those older than cutoff
// (ULID milliseconds; 0 = any age), at most limit of them (-1 = no limit),
// a chunk at a time, paced by pc.
func (db *DB) deleteOldest(ctx context.Context, pc *pacer, domain string, cutoff uint64, limit int64, reason string) error {
	prefix := pairPrefix(domain)
	seek := prefix
	for limit != 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := int64(pc.chunk)
		if limit > 0 && limit < n {
			n = limit
		}
		if err := pc.wait(ctx); err != nil {
			return err
		}
		start := pc.now()
		vs, next, err := db.findOldest(prefix, seek, cutoff, int(n))
		if err != nil {
			return err
		}
		if len(vs) > 0 {
			if err := db.deleteChunk(domain, vs, reason); err != nil {
				return err
			}
			if limit > 0 {
				limit -= int64(len(vs))
			}
			pc.chunkDone(len(vs), start)
		}
		if next == nil {
			return nil
		}
		seek = next
	}
	return nil
}

// findOldest returns up to n live pairs from seek on, older than cutoff, and
// the key to continue from (nil when done). It iterates all versions so that
// it also finds pairs Badger's backstop TTL already hides; a key whose
// newest version is our own delete marker is skipped.
func (db *DB) findOldest(prefix, seek []byte, cutoff uint64, n int) ([]victim, []byte, error) {
	var vs []victim
	var next []byte
	read := 0 // value bytes, faulted in from the value log's mapping
	defer func() { db.noteMapped(read) }()
	err := db.bdb.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, AllVersions: true})
		defer it.Close()
		var last []byte
		for it.Seek(seek); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()
			if last != nil && string(key) == string(last) {
				continue // an older version of a key already decided
			}
			last = append(last[:0], key...)
			if id, ok := pairKeyID(key); ok && cutoff > 0 && id.Time() >= cutoff {
				return nil
			}
			if item.IsDeletedOrExpired() && item.ExpiresAt() == 0 {
				continue // deleted by us: already counted
			}
			if len(vs) == n {
				next = item.KeyCopy(nil)
				return nil
			}
			v := victim{key: item.KeyCopy(nil)}
			if err := item.Value(func(b []byte) error {
				read += len(b)
				l, err := decodePairLabel(b)
				v.label = l
				return err
			}); err != nil {
				db.log.Warn("retention: cannot read the label of an expired pair; its label count will be off by one",
					"key", fmt.Sprintf("%x", key), "err", err)
			} else {
				v.ok = true
			}
			vs = append(vs, v)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("finding pairs to delete: %w", err)
	}
	return vs, next, nil
}

// deleteChunk deletes vs and decrements the counts in one transaction.
func (db *DB) deleteChunk(domain string, vs []victim, reason string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	e := db.domains[domain]
	if e == nil {
		return fmt.Errorf("deleting pairs of %s: domain not in cache", domain)
	}
	delta := make(map[labelRef]int64)
	for _, v := range vs {
		if v.ok {
			delta[labelRef{domain, v.label}]--
		}
	}
	counts, err := db.labelCounts(delta)
	if err != nil {
		return err
	}
	rec := e.rec.clone()
	rec.Pairs -= int64(len(vs))
	if rec.Pairs < 0 {
		rec.Pairs = 0
	}
	recVal, err := json.Marshal(&rec)
	if err != nil {
		return err
	}
	if err := db.roomFor(0, db.space.floor/2); err != nil {
		return fmt.Errorf("deleting pairs of %s: %w", domain, err)
	}

	wb := db.bdb.NewWriteBatch()
	defer wb.Cancel()
	for _, v := range vs {
		if err := wb.Delete(v.key); err != nil {
			return fmt.Errorf("deleting pair: %w", err)
		}
	}
	for ref, n := range counts {
		var err error
		if n <= 0 {
			err = wb.Delete(labelKey(ref.domain, ref.label))
		} else {
			err = wb.Set(labelKey(ref.domain, ref.label), appendLabelCount(nil, ref.label, n))
		}
		if err != nil {
			return fmt.Errorf("writing label count: %w", err)
		}
	}
	if err := wb.Set(domainKey(domain), recVal); err != nil {
		return fmt.Errorf("writing domain %s: %w", domain, err)
	}
	if err := wb.Flush(); err != nil {
		db.invalidate(map[string]domainRecord{domain: rec})
		return fmt.Errorf("deleting %d pairs of %s: %w", len(vs), domain, err)
	}
	e.rec = rec
	db.cacheLabels(counts)
	db.m.retentionDeleted.WithLabelValues(reason).Add(float64(len(vs)))
	return nil
}
