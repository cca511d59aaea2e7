package router

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/understudy-dev/understudy/storage"
)

// saver writes routing records off the request path: save keeps the
// latest record of each domain and returns at once; Router.Run writes them
// (flush) when woken, and what is left when it ends.
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
}

func newSaver(store Store, log *slog.Logger) *saver {
	return &saver{store: store, log: log, pending: map[string]Record{}, wake: make(chan struct{}, 1)}
}

// save queues rec as domain's latest record. It never blocks.
func (s *saver) save(domain string, rec Record) {
	s.mu.Lock()
	s.pending[domain] = cloneRecord(rec)
	s.mu.Unlock()
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
			s.log.Error("saving a routing record", "domain", d, "err", err)
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
