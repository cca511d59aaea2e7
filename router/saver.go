package router

import (
	"context"
	"log/slog"
	"sync"
)

// Saver writes routing records off the request path: Save keeps the latest
// record of each domain and returns at once; Run writes them with the
// given function, and writes what is left when ctx ends.
type Saver struct {
	write func(domain string, rec Record) error
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]Record
	wake    chan struct{}
}

// NewSaver returns a Saver that writes with write.
func NewSaver(write func(domain string, rec Record) error, log *slog.Logger) *Saver {
	if log == nil {
		log = slog.Default()
	}
	return &Saver{write: write, log: log, pending: map[string]Record{}, wake: make(chan struct{}, 1)}
}

// Save queues rec as domain's latest record. It never blocks.
func (s *Saver) Save(domain string, rec Record) error {
	s.mu.Lock()
	s.pending[domain] = cloneRecord(rec)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run writes queued records until ctx is done, then writes the rest.
func (s *Saver) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			s.Flush()
			return nil
		case <-s.wake:
			s.Flush()
		}
	}
}

// Flush writes the queued records now.
func (s *Saver) Flush() {
	s.mu.Lock()
	batch := s.pending
	s.pending = map[string]Record{}
	s.mu.Unlock()
	for d, rec := range batch {
		if err := s.write(d, rec); err != nil {
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
