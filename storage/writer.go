package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"
)

// Each write goes to Badger as chunks that fit in one Badger transaction, so
// that a chunk's pairs and the domain and label records counting them commit
// together or not at all: counts stay right across a crash. Badger splits a
// WriteBatch into several transactions at 15% of the memtable size or
// maxBatchCount entries; we stay under half of both.
const (
	txnBytesLimit   = (15 * memTableSize / 100) / 2
	txnEntriesLimit = (15 * memTableSize / 100) / int64(skl.MaxNodeSize) / 2
)

// entrySize mirrors Badger's estimate of an entry's share of a transaction.
func entrySize(key, val int) int64 {
	if val >= valueThreshold {
		val = 12 // value pointer
	}
	return int64(key + val + 2 + 10)
}

// runWriter is the writer goroutine: it batches queued pairs and writes them
// on BatchSize, FlushInterval, a Flush call, and, draining the queue, on Close.
//
// It waits on those events, never on the queue itself: a writer blocked on
// the queue would be woken by every Log, a thread wake-up per request that
// showed in the request path's p99 at 2,000 req/s. The queue wakes it
// when BatchSize pairs are waiting, and on Flush.
func (db *DB) runWriter() {
	defer db.wg.Done()
	defer db.q.Stopped()
	ticker := time.NewTicker(db.opts.FlushInterval)
	defer ticker.Stop()
	spaceTicker := time.NewTicker(spaceCheckInterval)
	defer spaceTicker.Stop()

	batch := make([]*queued, 0, db.opts.BatchSize)
	write := func() {
		if len(batch) > 0 {
			db.writePairs(batch)
			clear(batch)
			batch = batch[:0]
		}
	}
	drain := func() {
		for {
			select {
			case q := <-db.q.Items():
				batch = append(batch, q)
				if len(batch) >= db.opts.BatchSize {
					write()
				}
			default:
				write()
				return
			}
		}
	}
	for {
		select {
		case <-db.q.Wake():
			drain()
		case <-ticker.C:
			drain()
		case <-spaceTicker.C:
			db.checkSpace()
		case <-db.ctx.Done():
			// Close set the closed flag before cancelling: nothing more
			// can enter the queue, so an empty queue is the end.
			drain()
			return
		}
	}
}

// writePairs writes a batch in transaction-sized chunks and reports progress
// to Flush.
func (db *DB) writePairs(batch []*queued) {
	total := len(batch)
	var size int64
	for _, q := range batch {
		size += q.size
	}
	var firstErr error
	for len(batch) > 0 {
		n := chunkLen(batch)
		if err := db.chunkRoom(batch[:n]); err != nil {
			// Not written, and not a write error: counted as dropped.
			db.dropDiskFull(n)
			if firstErr == nil {
				firstErr = err
			}
			batch = batch[n:]
			continue
		}
		written, err := db.writeChunk(batch[:n])
		if err != nil {
			db.q.WriteFailed()
			db.log.Error("writing pairs to the pair log", "pairs", n, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		} else {
			db.q.Wrote(written)
		}
		batch = batch[n:]
	}

	db.q.Done(total, size, firstErr)
}

// chunkRoom checks, before a chunk goes to Badger, that logging is not
// paused and that the disk has room for it above the floor (see space.go);
// it pauses logging when not.
func (db *DB) chunkRoom(chunk []*queued) error {
	if db.space.paused.Load() {
		return fmt.Errorf("%w: logging paused", ErrDiskFull)
	}
	var n int64
	for _, q := range chunk {
		n += q.size
	}
	if err := db.roomFor(n, db.space.floor); err != nil {
		db.pause(err)
		return err
	}
	return nil
}

// chunkLen returns how many pairs from the front of batch fit in one
// transaction together with their domain and label records.
func chunkLen(batch []*queued) int {
	var size, entries int64
	for i, q := range batch {
		// pair + worst case one domain record and one label record per pair
		s := entrySize(len(prefixPair)+len(q.p.Domain)+17, pairSize(&q.p)) +
			entrySize(len(prefixDomain)+len(q.p.Domain), 512) +
			entrySize(len(prefixLabel)+len(q.p.Domain)+2+min(len(q.p.Label), maxInlineLabel), len(q.p.Label)+10)
		if i > 0 && (size+s > txnBytesLimit || entries+3 > txnEntriesLimit) {
			return i
		}
		size += s
		entries += 3
	}
	return len(batch)
}

type labelRef struct{ domain, label string }

// writeChunk writes pairs and the domain and label records they change in
// one WriteBatch (one Badger transaction, see chunkLen), then updates the
// cache. It holds db.mu throughout so that retention and updateDomain see
// a cache equal to what is stored.
func (db *DB) writeChunk(chunk []*queued) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()

	chunk, err := db.dropDuplicates(chunk)
	if err != nil || len(chunk) == 0 {
		return 0, err
	}
	recs := make(map[string]domainRecord)
	labelDelta := make(map[labelRef]int64)
	for _, q := range chunk {
		p := &q.p
		rec, ok := recs[p.Domain]
		if !ok {
			if e := db.domains[p.Domain]; e != nil {
				rec = e.rec.clone()
			} else {
				rec = domainRecord{FirstSeen: p.Time, LastSeen: p.Time}
			}
		}
		if p.Time.Before(rec.FirstSeen) || rec.FirstSeen.IsZero() {
			rec.FirstSeen = p.Time
		}
		if p.Time.After(rec.LastSeen) {
			rec.LastSeen = p.Time
		}
		rec.Pairs++
		rec.Logged++
		recs[p.Domain] = rec
		labelDelta[labelRef{p.Domain, p.Label}]++
	}
	counts, err := db.labelCounts(labelDelta)
	if err != nil {
		return 0, err
	}

	// One buffer holds every key and value of the chunk: Badger keeps the
	// slices until the batch is flushed, and an append that outgrows buf
	// moves only the bytes after them.
	size := 0
	for _, q := range chunk {
		size += len(prefixPair) + len(q.p.Domain) + 17 + pairSize(&q.p)
	}
	buf := make([]byte, 0, size)

	wb := db.bdb.NewWriteBatch()
	defer wb.Cancel()
	now := db.now()
	for _, q := range chunk {
		start := len(buf)
		buf = appendPairKey(buf, q.p.Domain, q.id)
		keyEnd := len(buf)
		buf = appendPair(buf, &q.p)
		e := badger.NewEntry(buf[start:keyEnd:keyEnd], buf[keyEnd:len(buf):len(buf)])
		e.ExpiresAt = db.ttlExpiry(q.id.Time(), now)
		if err := wb.SetEntry(e); err != nil {
			return 0, fmt.Errorf("writing pair %s: %w", q.p.ID, err)
		}
	}
	for name, rec := range recs {
		v, err := json.Marshal(&rec)
		if err != nil {
			return 0, fmt.Errorf("encoding domain %s: %w", name, err)
		}
		if err := wb.Set(domainKey(name), v); err != nil {
			return 0, fmt.Errorf("writing domain %s: %w", name, err)
		}
	}
	for ref, n := range counts {
		if err := wb.Set(labelKey(ref.domain, ref.label), appendLabelCount(nil, ref.label, n)); err != nil {
			return 0, fmt.Errorf("writing label count %s/%s: %w", ref.domain, ref.label, err)
		}
	}
	if err := wb.Flush(); err != nil {
		db.invalidate(recs)
		return 0, fmt.Errorf("committing %d pairs: %w", len(chunk), err)
	}
	for name, rec := range recs {
		e := db.domains[name]
		if e == nil {
			e = &domainEntry{}
			db.domains[name] = e
		}
		e.rec = rec
	}
	db.cacheLabels(counts)
	db.noteMapped(size)
	return len(chunk), nil
}

// dropDuplicates removes pairs whose caller-given ID is already stored or
// repeats within the chunk: writing them again would count them twice.
// Generated IDs are unique. Caller holds db.mu.
func (db *DB) dropDuplicates(chunk []*queued) ([]*queued, error) {
	given := 0
	for _, q := range chunk {
		if q.given {
			given++
		}
	}
	if given == 0 {
		return chunk, nil
	}
	out := make([]*queued, 0, len(chunk))
	seen := make(map[string]bool, given)
	err := db.bdb.View(func(txn *badger.Txn) error {
		for _, q := range chunk {
			if !q.given {
				out = append(out, q)
				continue
			}
			key := appendPairKey(nil, q.p.Domain, q.id)
			if seen[string(key)] {
				db.q.Dropped(reasonDuplicate).Inc()
				continue
			}
			seen[string(key)] = true
			_, err := txn.Get(key)
			switch {
			case err == nil:
				db.q.Dropped(reasonDuplicate).Inc()
			case errors.Is(err, badger.ErrKeyNotFound):
				out = append(out, q)
			default:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checking for duplicate pairs: %w", err)
	}
	return out, nil
}

// ttlExpiry returns Badger's expiry (Unix seconds) for a pair with ULID time
// ms. Retention deletes pairs when they pass TTL and decrements the counts in
// the same transaction; Badger's own TTL, a grace period later, is only a
// backstop should retention not run. It is never earlier than now+grace so
// that retention sees (and counts) a pair logged with an old time.
func (db *DB) ttlExpiry(ms uint64, now time.Time) uint64 {
	if db.opts.TTL < 0 {
		return 0
	}
	t := time.UnixMilli(int64(ms)).Add(db.opts.TTL + db.grace)
	if floor := now.Add(db.grace); t.Before(floor) {
		t = floor
	}
	return uint64(t.Unix()) + 1
}

// labelCounts returns the new stored count of each label in delta, reading
// counts that are not cached from Badger. Counts that reach zero are
// returned as zero (the caller deletes them). Caller holds db.mu.
func (db *DB) labelCounts(delta map[labelRef]int64) (map[labelRef]int64, error) {
	out := make(map[labelRef]int64, len(delta))
	var miss []labelRef
	for ref, d := range delta {
		if e := db.domains[ref.domain]; e != nil && e.labels != nil {
			if c, ok := e.labels[ref.label]; ok {
				out[ref] = c + d
				continue
			}
		}
		miss = append(miss, ref)
	}
	if len(miss) == 0 {
		return out, nil
	}
	err := db.bdb.View(func(txn *badger.Txn) error {
		for _, ref := range miss {
			var c int64
			item, err := txn.Get(labelKey(ref.domain, ref.label))
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return err
			default:
				if err := item.Value(func(v []byte) error {
					_, n, err := decodeLabelCount(v)
					c = n
					return err
				}); err != nil {
					return err
				}
			}
			out[ref] = c + delta[ref]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading label counts: %w", err)
	}
	return out, nil
}

// cacheLabels records committed label counts. Caller holds db.mu.
func (db *DB) cacheLabels(counts map[labelRef]int64) {
	if db.nLabels+len(counts) > maxCachedLabels {
		// Dropping the cache is always safe: it is a copy of what is
		// stored. Classification domains refill it on the next batch.
		for _, e := range db.domains {
			e.labels = nil
		}
		db.nLabels = 0
	}
	for ref, n := range counts {
		e := db.domains[ref.domain]
		if e == nil {
			continue
		}
		if e.labels == nil {
			e.labels = make(map[string]int64)
		}
		_, had := e.labels[ref.label]
		switch {
		case n <= 0 && had:
			delete(e.labels, ref.label)
			db.nLabels--
		case n <= 0:
		case !had:
			e.labels[ref.label] = n
			db.nLabels++
		default:
			e.labels[ref.label] = n
		}
	}
}

// invalidate reloads the records of domains whose write failed: part of a
// WriteBatch may have committed. Caller holds db.mu.
func (db *DB) invalidate(recs map[string]domainRecord) {
	for name := range recs {
		if e := db.domains[name]; e != nil {
			db.nLabels -= len(e.labels)
		}
		delete(db.domains, name)
	}
	err := db.bdb.View(func(txn *badger.Txn) error {
		for name := range recs {
			item, err := txn.Get(domainKey(name))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var rec domainRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &rec) }); err != nil {
				return err
			}
			db.domains[name] = &domainEntry{rec: rec}
		}
		return nil
	})
	if err != nil {
		db.log.Error("reloading domain records after a failed write", "err", err)
	}
}
