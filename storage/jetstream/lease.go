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
//
// Counting the lease held relies on the holder's clock and on no pause
// between a check of Held and the write that follows it. The writes are
// fenced too, by the server: see termKey.
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
	// fence is the revision of the term entry this replica wrote when it
	// took the lease, during its term; 0 outside its terms. Its routing
	// writes are conditioned on it (see termKey): with 0, on there being
	// no term entry, so a replica between terms writes nothing.
	fence atomic.Uint64
	// deposed wakes hold when a write was fenced off: the term ends.
	deposed chan struct{}
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
// held, once it claimed the routing records (claimTerm). It returns when
// the lease is lost or a write was fenced off (after term returned; then
// it releases the lease if it still holds it, so that the replicas decide
// again), or when ctx ends (after term returned; then it releases the
// lease).
func (s *Store) hold(ctx context.Context, rev uint64, sent time.Time, term func(context.Context)) {
	heldFor := s.opts.LeaseTTL / 2
	epoch := rev
	select {
	case <-s.lease.deposed: // a write of a past term
	default:
	}
	if err := s.claimTerm(ctx, epoch); err != nil {
		s.log.Warn("learner lease: could not claim the routing records; giving the lease up", "epoch", epoch, "err", err)
		s.releaseLease(rev, epoch)
		return
	}
	// Held from the claim on (until then this replica could not write),
	// for heldFor from when the lease was taken.
	s.lease.until.Store(sent.Add(heldFor).UnixNano())
	s.log.Info("learner lease taken: this replica trains and runs the gate", "holder", s.lease.holder, "epoch", epoch)

	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // owned by hold: it waits for it below
		defer close(done)
		term(tctx)
	}()
	tick := time.NewTicker(s.opts.LeaseTTL / 5)
	defer tick.Stop()
	// endTerm waits for term and drops the fence: a write of this term
	// refused from now on is one of a past term (see depose), which must
	// not end the next one.
	endTerm := func() {
		cancel()
		<-done
		s.lease.fence.Store(0)
	}
	lost := func(why string, err error) {
		s.lease.until.Store(0)
		endTerm()
		s.log.Warn("learner lease lost: another replica may take it", "epoch", epoch, "why", why, "err", err)
	}
	v, _ := json.Marshal(leaseValue{Holder: s.lease.holder, Since: sent.UTC()})
	for {
		select {
		case <-ctx.Done():
			endTerm()
			s.releaseLease(rev, epoch)
			return
		case <-s.lease.deposed:
			lost("a write was fenced off: another replica took the lease", storage.ErrFenced)
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

// termKey is the term entry in the routes bucket: the fence of the
// routing records. A replica that takes the lease claims the records
// before its term begins (claimTerm): it writes the entry, holding its
// epoch, conditioned on the revision it read there (compare-and-set),
// and keeps the revision of that write in leaseState.fence. Every routing
// record it writes is then conditioned, by the server, on the term entry
// still being at that revision (PutRoutingRecord). The claim is the
// point where one term ends and the next begins: a record the previous
// holder wrote before it was in the records the new holder reads (it
// reads them after its claim), and any write of the previous holder after
// it fails with storage.ErrFenced, however long it was paused and
// whatever its clock says. The new holder needs to rewrite no record:
//
//   - A condition on each record's own revision (the one the holder last
//     wrote or read) would fence records that exist, once the new holder
//     rewrote each of them — a write per domain at every takeover — and
//     would still let the deposed holder create the record of a domain
//     the new holder had not written yet. Merely remembering the
//     revisions read would fence nothing until the new holder wrote: the
//     deposed holder's update would find the revision it expects.
//   - One entry that every write is conditioned on fences them all, old
//     domains and new, at the cost of one write per takeover.
//
// Two claims cannot both be based on one revision of the entry, and a
// claim never lowers its epoch (one that finds a higher epoch is refused
// unless the lease bucket was made anew, see claimTerm), so a holder
// paused before its claim cannot fence the newer holder after it. A key
// with a '.' is never a domain's (see token): listings skip it. A store
// that never took the lease writes only while no replica ever has (the
// entry is absent): a store used alone, as the tests use it, works as
// before. Needs nats-server 2.11 or later, as the pairs' stream does.
const termKey = "learner.term"

// termValue is what the term entry holds.
type termValue struct {
	Holder string    `json:"holder"`
	Epoch  uint64    `json:"epoch"`
	Since  time.Time `json:"since"`
}

// claimTerm writes the term entry for the lease taken at epoch (see
// termKey) and makes its revision this store's fence. It fails with
// storage.ErrFenced when a newer holder claimed the records already.
func (s *Store) claimTerm(ctx context.Context, epoch uint64) error {
	cctx, cancel := context.WithTimeout(ctx, s.opts.LeaseTTL/2)
	defer cancel()
	v, _ := json.Marshal(termValue{Holder: s.lease.holder, Epoch: epoch, Since: time.Now().UTC()})
	for range 5 {
		var rev uint64
		e, err := s.kvRt.Get(cctx, termKey)
		switch {
		case errors.Is(err, njs.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("reading the term entry: %w", err)
		default:
			rev = e.Revision()
			var cur termValue
			if json.Unmarshal(e.Value(), &cur) == nil && cur.Epoch > epoch && !s.leaseIs(cctx, epoch) {
				return fmt.Errorf("claiming the routing records: epoch %d claimed them: %w", cur.Epoch, storage.ErrFenced)
			}
		}
		var next uint64
		if rev == 0 {
			next, err = s.kvRt.Create(cctx, termKey, v)
		} else {
			next, err = s.kvRt.Update(cctx, termKey, v, rev)
		}
		if err == nil {
			s.lease.fence.Store(next)
			return nil
		}
		if !errors.Is(err, njs.ErrKeyExists) && !errors.Is(err, njs.ErrKeyRevisionMismatch) {
			return fmt.Errorf("writing the term entry: %w", err)
		}
	}
	return errors.New("writing the term entry: it kept changing")
}

// leaseIs reports whether the lease entry is still the one created at
// epoch: the case where the term entry holds a higher epoch because the
// lease bucket was deleted and made anew, restarting its revisions.
func (s *Store) leaseIs(ctx context.Context, epoch uint64) bool {
	e, err := s.kvLease.Get(ctx, leaseKey)
	return err == nil && e.Revision() == epoch
}

// depose takes a refused write conditioned on fence, and reports whether
// it was fenced off, which ends the term it was written in: outside any
// term of this replica it is (another holds the lease, or none: nothing
// to end); in the term of that fence it is, and that term ends; in a later
// term of this replica it is not (the write was of an earlier one, and
// the current term goes on).
func (s *Store) depose(fence uint64) bool {
	switch cur := s.lease.fence.Load(); {
	case cur == 0:
		return true
	case cur != fence:
		return false
	}
	select {
	case s.lease.deposed <- struct{}{}:
	default:
	}
	return true
}
