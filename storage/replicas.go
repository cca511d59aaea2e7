package storage

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var _ ReplicaSet = (*DB)(nil)

// ReplicaID names a process among the replicas: its host, its process id
// and a random part, so that a restarted process is another replica.
func ReplicaID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])
}

// solo is the embedded DB's replica set: one process, this one.
type solo struct {
	once    sync.Once
	id      string
	host    string
	started time.Time

	mu      sync.Mutex
	version string
	report  func() ReplicaCounters // nil while not announced
}

func (s *solo) init() {
	s.once.Do(func() {
		s.id, s.started = ReplicaID(), time.Now().UTC()
		s.host, _ = os.Hostname()
	})
}

// Replica is this process's ID ("host/pid/random").
func (db *DB) Replica() string {
	db.solo.init()
	return db.solo.id
}

// Announce makes this process the one replica Replicas lists until ctx
// ends or the DB closes. Its counters are read when Replicas is called.
func (db *DB) Announce(ctx context.Context, version string, report func() ReplicaCounters) error {
	s := &db.solo
	s.init()
	s.mu.Lock()
	s.version, s.report = version, report
	s.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-db.ctx.Done():
	}
	s.mu.Lock()
	s.report = nil
	s.mu.Unlock()
	return nil
}

// Replicas returns this process, with its counters as of now, once it
// announced itself; none before.
func (db *DB) Replicas(context.Context) ([]Replica, error) {
	s := &db.solo
	s.init()
	s.mu.Lock()
	version, report := s.version, s.report
	s.mu.Unlock()
	if report == nil {
		return nil, nil
	}
	logged, dropped := db.q.Counts()
	return []Replica{{ID: s.id, Host: s.host, PID: os.Getpid(), Version: version, Started: s.started,
		LastSeen: time.Now().UTC(), Leader: db.Held(), PairsLogged: logged, PairsDropped: dropped,
		ReplicaCounters: report()}}, nil
}

// Counts returns how many pairs the queue's backend logged and how many
// it dropped (all reasons) since it was made, as its metrics count them.
func (q *Queue[T]) Counts() (logged, dropped uint64) {
	var m dto.Metric
	if q.logged.Write(&m) == nil {
		logged = uint64(m.GetCounter().GetValue())
	}
	// Collect sends a series per reason: a backend may add reasons later,
	// so it sends to a reader rather than into a buffer of a set size.
	ch := make(chan prometheus.Metric)
	go func() {
		q.dropped.Collect(ch)
		close(ch)
	}()
	for c := range ch {
		var m dto.Metric
		if c.Write(&m) == nil {
			dropped += uint64(m.GetCounter().GetValue())
		}
	}
	return logged, dropped
}
