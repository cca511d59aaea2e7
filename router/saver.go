package router

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/understudy-dev/understudy/storage"
)

// saver writes routing records off the request path: save keeps the
// latest record of each domain and returns at once; Router.Run writes them
// (flush) when woken, and what is left when it ends. A record the store
// could not write (NATS away, a timeout) is tried again every second
// until it is written or a newer one of its domain replaces it: a
// transition reaches the other replicas once the store is back, not at
// the domain's next change.
type saver struct {
	store Store
	log   *slog.Logger
	// held, when set, guards the writes: flush writes only while it is
	// true (the learner lease is held) and drops the records otherwise.
	held func() bool
	// fenced, when set, is called when the store refused a write with
	// storage.ErrFenced (another replica took the lease): flush drops the
	// rest of its records, and the router stops leading.
	fenced func()

	mu      sync.Mutex
	pending map[string]Record
	wake    chan struct{}
	failing atomic.Bool // the last write failed: logged once, until one succeeds
}

// retryAfter is how long a record the store could not write waits before
// it is tried again.
const retryAfter = time.Second

func newSaver(store Store, log *slog.Logger) *saver {
	return &saver{store: store, log: log, pending: map[string]Record{}, wake: make(chan struct{}, 1)}
}

// save queues rec as domain's latest record. It never blocks.
func (s *saver) save(domain string, rec Record) {
	s.mu.Lock()
	s.pending[domain] = cloneRecord(rec)
	s.mu.Unlock()
	s.signal()
}

// signal wakes Router.Run to flush.
func (s *saver) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// flush writes the queued records now.
func (s *saver) flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string]Record{}
	s.mu.Unlock()
	for d, rec := range batch {
		if s.held != nil && !s.held() {
			s.log.Warn("not saving routing records: this replica does not hold the learner lease", "records", len(batch))
			return
		}
		b, err := json.Marshal(rec)
		if err == nil {
			err = s.store.PutRoutingRecord(d, b)
		}
		if errors.Is(err, storage.ErrFenced) {
			s.log.Warn("not saving routing records: another replica took the learner lease", "domain", d, "records", len(batch), "err", err)
			if s.fenced != nil {
				s.fenced()
			}
			return
		}
		if err != nil {
			s.requeue(batch)
			if !s.failing.Swap(true) {
				s.log.Error("saving a routing record; trying again every second", "domain", d, "records", len(batch), "err", err)
			}
			time.AfterFunc(retryAfter, s.signal)
			return
		}
		delete(batch, d) // written
		if s.failing.Swap(false) {
			s.log.Info("saving routing records again")
		}
	}
}

// requeue puts back the records of a flush that could not write them,
// each unless a newer one of its domain was queued meanwhile.
func (s *saver) requeue(batch map[string]Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, rec := range batch {
		if _, newer := s.pending[d]; !newer {
			s.pending[d] = rec
		}
	}
}

// cloneRecord copies the record's maps and slices, which the router keeps
// changing.
func cloneRecord(r Record) Record {
	c := r
	c.Transitions = append([]Transition(nil), r.Transitions...)
	c.Scores = make(map[int][]byte, len(r.Scores))
	for k, v := range r.Scores {
		c.Scores[k] = v
	}
	c.Routes = make(map[Route]int64, len(r.Routes))
	for k, v := range r.Routes {
		c.Routes[k] = v
	}
	return c
}
