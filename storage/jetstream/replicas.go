package jetstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

// Each replica that announces itself keeps an entry, under replicaKey of
// its ID, in the bucket <prefix>_replicas: a storage.Replica as JSON,
// written every replicaEvery. The bucket's TTL, replicaTTL, removes the
// entry of a replica that stopped writing it (killed, cut off), so the
// live replicas are the bucket's entries; one that stops cleanly deletes
// its own at once.
//
// Fixed for now, not settings: a replica that dies drops out of the
// operators' views within replicaTTL. Tests shorten them.
var (
	replicaEvery = 2 * time.Second
	replicaTTL   = 10 * time.Second
)

// Announce writes this replica's entry now and every replicaEvery until
// ctx ends (then it deletes it) or the store closes (then the entry
// expires): see storage.ReplicaSet. A write that fails is tried again at
// the next turn.
func (s *Store) Announce(ctx context.Context, version string, report func() storage.ReplicaCounters) error {
	host, _ := os.Hostname()
	key := replicaKey(s.Replica())
	me := storage.Replica{ID: s.Replica(), Host: host, PID: os.Getpid(), Version: version, Started: s.started}
	tick := time.NewTicker(replicaEvery)
	defer tick.Stop()
	failing := false
	for {
		me.LastSeen, me.Leader = time.Now().UTC(), s.Held()
		me.PairsLogged, me.PairsDropped = s.q.Counts()
		me.ReplicaCounters = report()
		err := s.putReplica(key, me)
		if err == nil {
			err = s.countReplicas()
		}
		switch {
		case err != nil && !failing && !s.isClosed():
			s.log.Warn("replicas: could not announce this replica; trying again", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("replicas: announcing this replica again")
			failing = false
		}
		select {
		case <-tick.C:
		case <-s.ctx.Done():
			return nil // closed: the entry expires
		case <-ctx.Done():
			s.withdraw(key)
			return nil
		}
	}
}

func (s *Store) putReplica(key string, r storage.Replica) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel, err := s.call(1)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.kvRep.Put(ctx, key, b); err != nil {
		return fmt.Errorf("writing the entry of replica %s: %w", r.ID, s.closedErr(err))
	}
	return nil
}

// countReplicas counts the live entries for understudy_replicas: their
// keys only (Replicas keeps the count current too).
func (s *Store) countReplicas() error {
	ctx, cancel, err := s.call(1)
	if err != nil {
		return err
	}
	defer cancel()
	keys, err := s.kvRep.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing replicas: %w", s.closedErr(err))
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("listing replicas: %w", err)
	}
	s.seen.Store(int64(n))
	return nil
}

// withdraw deletes this replica's entry, so that it leaves the views at
// once rather than after replicaTTL.
func (s *Store) withdraw(key string) {
	s.seen.Store(0)
	ctx, cancel, err := s.call(1)
	if err == nil {
		defer cancel()
		err = s.kvRep.Delete(ctx, key)
	}
	if err != nil {
		s.log.Warn("replicas: entry not deleted; it expires within the TTL", "ttl", replicaTTL, "err", err)
	}
}

// Replicas reads the live replicas' entries, oldest first (then by ID).
// An entry that expires while it is read is left out.
func (s *Store) Replicas(ctx context.Context) ([]storage.Replica, error) {
	cctx, cancel, err := s.call(1)
	if err != nil {
		return nil, err
	}
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	keys, err := s.kvRep.ListKeys(cctx)
	if err != nil {
		return nil, fmt.Errorf("listing replicas: %w", s.closedErr(err))
	}
	var out []storage.Replica
	for key := range keys.Keys() {
		e, err := s.kvRep.Get(cctx, key)
		if errors.Is(err, njs.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			_ = keys.Stop()
			return nil, fmt.Errorf("reading replica %s: %w", key, s.closedErr(err))
		}
		var r storage.Replica
		if err := json.Unmarshal(e.Value(), &r); err != nil {
			s.log.Warn("replicas: unreadable entry left out", "key", key, "err", err)
			continue
		}
		out = append(out, r)
	}
	if err := cctx.Err(); err != nil {
		return nil, fmt.Errorf("listing replicas: %w", err)
	}
	slices.SortFunc(out, func(a, b storage.Replica) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	s.seen.Store(int64(len(out)))
	return out, nil
}
