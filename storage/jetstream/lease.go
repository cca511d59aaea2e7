package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/understudy-dev/understudy/storage"
)

var _ storage.Lease = (*Store)(nil)

// The learner lease is one entry, leaseKey, in the bucket <prefix>_lease,
// whose TTL is Options.LeaseTTL: an entry not written again within it
// expires. A replica takes the lease by creating the entry (which fails
// while another holds it), and keeps it by updating it every
// LeaseTTL/5, each update conditioned on the revision of its last
// (compare-and-set): an update that finds another revision means the
// lease was lost. A holder counts the lease held for LeaseTTL/2 after it
// sent its last successful write, so it stops counting it held — and
// writing routing records — well before the entry can expire and another
// replica create it. A holder that stops cleanly deletes the entry, and
// another replica takes it within a second; one that dies leaves it to
// expire, and another takes it within LeaseTTL and a second.
//
// The revision of the creating write is the lease's epoch: it grows with
// every holder and names the term in the logs.
const leaseKey = "learner"

// leaseValue is what the lease entry holds, for operators reading it.
type leaseValue struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// holderID names this process among the replicas: the host, the process
// id and a random part, so a restarted process is another holder.
func holderID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])
}

// Replica names this process among the replicas sharing the store
// ("host/pid/random"): the learner lease's holder when it leads, and the
// Understudy-Replica header of the pairs it logs.
func (s *Store) Replica() string { return s.lease.holder }

// leaseState is this store's view of the lease.
type leaseState struct {
	holder string
	// until is when this replica stops counting the lease held (Unix ns);
	// 0 when it does not hold it.
	until atomic.Int64
}

// Held reports whether this replica holds the learner lease now.
func (s *Store) Held() bool {
	u := s.lease.until.Load()
	return u != 0 && time.Now().UnixNano() < u
}

// Lead runs for the learner lease until ctx ends or the store closes:
// see storage.Lease. While another replica holds it, it tries to take it
// every LeaseTTL/5 (at most every second).
func (s *Store) Lead(ctx context.Context, term func(ctx context.Context)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	poll := min(s.opts.LeaseTTL/5, time.Second)
	for ctx.Err() == nil {
		if rev, sent, ok := s.takeLease(ctx); ok {
			s.hold(ctx, rev, sent, term)
			continue
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return nil
}

// takeLease creates the lease entry: ok when this replica took it, with
// the entry's revision and when the write was sent.
func (s *Store) takeLease(ctx context.Context) (rev uint64, sent time.Time, ok bool) {
	v, _ := json.Marshal(leaseValue{Holder: s.lease.holder, Since: time.Now().UTC()})
	cctx, cancel := context.WithTimeout(ctx, s.opts.LeaseTTL/2)
	defer cancel()
	sent = time.Now()
	rev, err := s.kvLease.Create(cctx, leaseKey, v)
	switch {
	case err == nil:
		return rev, sent, true
	case !errors.Is(err, njs.ErrKeyExists) && ctx.Err() == nil:
		s.log.Debug("learner lease: could not try to take it", "err", err)
	}
	return 0, sent, false
}

// hold keeps the lease taken at revision rev and runs term while it is
// held. It returns when the lease is lost (after term returned) or when
// ctx ends (after term returned; then it releases the lease).
func (s *Store) hold(ctx context.Context, rev uint64, sent time.Time, term func(context.Context)) {
	heldFor := s.opts.LeaseTTL / 2
	s.lease.until.Store(sent.Add(heldFor).UnixNano())
	epoch := rev
	s.log.Info("learner lease taken: this replica trains and runs the gate", "holder", s.lease.holder, "epoch", epoch)

	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // owned by hold: it waits for it below
		defer close(done)
		term(tctx)
	}()
	tick := time.NewTicker(s.opts.LeaseTTL / 5)
	defer tick.Stop()
	lost := func(why string, err error) {
		s.lease.until.Store(0)
		cancel()
		<-done
		s.log.Warn("learner lease lost: another replica may take it", "epoch", epoch, "why", why, "err", err)
	}
	v, _ := json.Marshal(leaseValue{Holder: s.lease.holder, Since: sent.UTC()})
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-done
			s.releaseLease(rev, epoch)
			return
		case <-tick.C:
			until := time.Unix(0, s.lease.until.Load())
			cctx, ccancel := context.WithDeadline(ctx, until)
			at := time.Now()
			next, err := s.kvLease.Update(cctx, leaseKey, v, rev)
			ccancel()
			switch {
			case err == nil && time.Now().Before(until):
				rev = next
				s.lease.until.Store(at.Add(heldFor).UnixNano())
			case ctx.Err() != nil:
				// Stopping: the next turn of the loop releases it.
			case err == nil:
				lost("renewed too late", nil)
				return
			case errors.Is(err, context.DeadlineExceeded) || time.Now().After(until):
				lost("not renewed in time", err)
				return
			default:
				// The server answered, and not with a new revision: the
				// entry expired or another replica wrote it.
				var api *njs.APIError
				if errors.As(err, &api) || errors.Is(err, njs.ErrKeyExists) {
					lost("another replica holds it", err)
					return
				}
				// A failed call (a lost connection): try again at the next
				// tick, while the lease still counts as held.
				s.log.Warn("learner lease: renewal failed, retrying", "epoch", epoch, "err", err)
			}
		}
	}
}

// releaseLease deletes the lease entry if this replica still holds it,
// so that another takes it at once.
func (s *Store) releaseLease(rev, epoch uint64) {
	s.lease.until.Store(0)
	ctx, cancel, err := s.call(1)
	if err == nil {
		defer cancel()
		err = s.kvLease.Delete(ctx, leaseKey, njs.LastRevision(rev))
	}
	if err != nil {
		s.log.Warn("learner lease: not released; another replica takes it when it expires", "epoch", epoch, "err", err)
		return
	}
	s.log.Info("learner lease released", "epoch", epoch)
}
