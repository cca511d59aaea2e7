package jetstream

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/storage"
)

// leader is a store running for the lease in a test, counting its terms.
type leader struct {
	s      *Store
	terms  atomic.Int32 // terms begun
	inTerm atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
}

// lead runs s for the lease until the test ends.
func lead(t *testing.T, s *Store) *leader {
	ctx, cancel := context.WithCancel(context.Background())
	l := &leader{s: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		_ = s.Lead(ctx, func(term context.Context) {
			l.terms.Add(1)
			l.inTerm.Store(true)
			<-term.Done()
			l.inTerm.Store(false)
		})
	}()
	t.Cleanup(func() { l.cancel(); <-l.done })
	return l
}

// TestDeposedLeaderIsFenced: two replicas on one server. The first takes
// the lease and writes; its lease entry is deleted (as if it expired
// while the holder was paused) and the second takes the lease. From then
// on every routing write of the first fails with ErrFenced — an update,
// and the record of a domain no one wrote yet — whether or not it noticed
// the loss, and so does its student version the second also stored; the
// second's writes succeed and are what every replica reads.
func TestDeposedLeaderIsFenced(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.LeaseTTL = 2 * time.Second
	a, b := openStore(t, o), openStore(t, o)
	la := lead(t, a)
	waitFor(t, "a to lead", la.inTerm.Load)
	if err := a.PutRoutingRecord("spam", []byte("a: shadowing v1")); err != nil {
		t.Fatalf("the leader's write: %v", err)
	}
	if err := a.PutStudent("spam", 1, []byte(`{"by":"a"}`), []byte("a's v1")); err != nil {
		t.Fatalf("the leader's student: %v", err)
	}

	// a's lease is gone; b takes it and claims the records.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.kvLease.Delete(ctx, leaseKey); err != nil {
		t.Fatal(err)
	}
	lb := lead(t, b)
	waitFor(t, "b to lead", lb.inTerm.Load)

	for _, d := range []string{"spam", "new"} {
		if err := a.PutRoutingRecord(d, []byte("a: stale")); !errors.Is(err, storage.ErrFenced) {
			t.Errorf("the deposed leader's record of %s: %v, want ErrFenced", d, err)
		}
	}
	if err := b.PutRoutingRecord("spam", []byte("b: serving v2")); err != nil {
		t.Fatalf("the new leader's write: %v", err)
	}
	if err := b.PutStudent("spam", 2, []byte(`{"by":"b"}`), []byte("b's v2")); err != nil {
		t.Fatalf("the new leader's student: %v", err)
	}
	if err := a.PutStudent("spam", 2, []byte(`{"by":"a"}`), []byte("a's v2")); !errors.Is(err, storage.ErrFenced) {
		t.Errorf("the deposed leader's v2: %v, want ErrFenced", err)
	}
	if err := a.PutRoutingRecord("spam", []byte("a: stale again")); !errors.Is(err, storage.ErrFenced) {
		t.Errorf("the deposed leader's second write: %v, want ErrFenced", err)
	}

	for _, s := range []*Store{a, b} {
		recs, err := s.RoutingRecords()
		if err != nil || len(recs) != 1 || string(recs["spam"]) != "b: serving v2" {
			t.Errorf("routing records: %q, %v; want the new leader's spam only", recs, err)
		}
		art, err := s.StudentArtifact("spam", 2)
		if err != nil || string(art) != "b's v2" {
			t.Errorf("artifact v2: %q, %v; want the new leader's", art, err)
		}
		vs, err := s.StudentVersions("spam")
		if err != nil || len(vs) != 2 || string(vs[1].Meta) != `{"by":"b"}` {
			t.Errorf("versions: %+v, %v", vs, err)
		}
	}
	waitFor(t, "the deposed leader's term to end", func() bool { return !la.inTerm.Load() })
	if a.Held() {
		t.Error("the deposed leader counts the lease held")
	}
}

// TestFencedWriteEndsTheTerm: a holder whose routing write is fenced off
// (here a newer claim of the records while its lease entry stays) ends
// its term at once, without waiting for a renewal to fail; the lease loop
// then decides again, and the term it begins writes again.
func TestFencedWriteEndsTheTerm(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.LeaseTTL = time.Minute // renewals alone would not notice for long
	a, b := openStore(t, o), openStore(t, o)
	la := lead(t, a)
	waitFor(t, "a to lead", la.inTerm.Load)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.claimTerm(ctx, 1<<40); err != nil {
		t.Fatal(err)
	}
	if err := a.PutRoutingRecord("spam", []byte("a")); !errors.Is(err, storage.ErrFenced) {
		t.Fatalf("a write after another claim: %v, want ErrFenced", err)
	}
	waitFor(t, "a second term", func() bool { return la.terms.Load() == 2 && la.inTerm.Load() })
	if err := a.PutRoutingRecord("spam", []byte("a, again")); err != nil {
		t.Errorf("a write in the new term: %v", err)
	}
	// b's claim, whose epoch no lease has, does not fence the holder out
	// for good: the holder's new claim found its own lease entry current.
	if recs, err := b.RoutingRecords(); err != nil || string(recs["spam"]) != "a, again" {
		t.Errorf("routing records: %q, %v", recs, err)
	}
}

// TestLateClaimIsRefused: a holder paused between taking the lease and
// claiming the records (its epoch lower than the claim it finds, its
// lease entry gone) cannot claim them from the newer holder.
func TestLateClaimIsRefused(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.LeaseTTL = 2 * time.Second
	a, b := openStore(t, o), openStore(t, o)
	lb := lead(t, b)
	waitFor(t, "b to lead", lb.inTerm.Load)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.claimTerm(ctx, 0); !errors.Is(err, storage.ErrFenced) {
		t.Fatalf("a late claim: %v, want ErrFenced", err)
	}
	if err := b.PutRoutingRecord("spam", []byte("b")); err != nil {
		t.Errorf("the holder's write after a refused late claim: %v", err)
	}
}
