package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
)

// replicas is router.Replicas for routers sharing one store in a test:
// the bus is a channel every replica publishes on and the leader reads;
// the watch is fed by the test with what the store holds.
type replicas struct {
	held  bool
	bus   chan []byte
	watch chan storage.RoutingChange
}

func (f *replicas) Held() bool { return f.held }
func (f *replicas) PublishSample(b []byte) bool {
	select {
	case f.bus <- b:
		return true
	default:
		return false
	}
}
func (f *replicas) Samples(context.Context) (<-chan []byte, error) { return f.bus, nil }
func (f *replicas) WatchRoutingRecords(ctx context.Context) (<-chan storage.RoutingChange, error) {
	out := make(chan storage.RoutingChange)
	go func() { // ends with ctx, closing out as the store's watch does
		defer close(out)
		for {
			select {
			case c := <-f.watch:
				select {
				case out <- c:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// TestReplicas: a leader and a follower router on one store. The
// follower applies the leader's stored records (the candidate, then the
// promotion, at the leader's τ), sends its samples to the leader's gate
// instead of counting them, writes nothing and refuses operator actions.
func TestReplicas(t *testing.T) {
	e := newEnv(t)
	bus := make(chan []byte, 4096)
	lr := &replicas{held: true, bus: bus}
	fr := &replicas{bus: bus, watch: make(chan storage.RoutingChange, 16)}
	leader, err := router.New(testConfig, router.Deps{Store: e.db, Shadow: e.submit, Replicas: lr})
	if err != nil {
		t.Fatal(err)
	}
	follower, err := router.New(testConfig, router.Deps{Store: e.db, Shadow: e.submit, Replicas: fr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { _ = leader.Lead(ctx); done <- struct{}{} }()
	go func() { _ = follower.Follow(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	waitFor(t, "the leader to lead", leader.Leading)
	if follower.Leading() {
		t.Fatal("a router with replicas leads before it took the lease")
	}
	// pass hands the follower what the store holds of spam.
	pass := func() {
		leader.Flush()
		recs, err := e.db.RoutingRecords()
		if err != nil {
			t.Fatal(err)
		}
		fr.watch <- storage.RoutingChange{Domain: "spam", Record: recs["spam"]}
	}

	e.add(leader, "spam", 1)
	pass()
	waitFor(t, "the follower to shadow v1", func() bool {
		v, _ := follower.View("spam")
		return v.State == router.Shadowing && v.Candidate == 1
	})
	if err := follower.AddVersion(e.version("spam", 2), nil); !errors.Is(err, router.ErrNotLeader) {
		t.Errorf("a follower's AddVersion: %v, want ErrNotLeader", err)
	}
	if _, err := follower.Act("spam", "pin-teacher"); !errors.Is(err, router.ErrNotLeader) {
		t.Errorf("a follower's Act: %v, want ErrNotLeader", err)
	}

	// The follower's samples promote v1 at the leader.
	agree := shadow.Sample{Confidence: 1, Uniform: true, Agree: true, Teacher: "yes", Student: "yes"}
	for i := 0; i < 1000 && leader.Decide("spam").State != router.Serving; i++ {
		follower.Observe("spam", 1, agree)
		if i%50 == 49 {
			waitFor(t, "the leader to take the samples", func() bool { return len(bus) == 0 })
		}
	}
	waitFor(t, "the leader to promote v1", func() bool { return leader.Decide("spam").State == router.Serving })
	if v, _ := follower.View("spam"); v.Candidate != 1 || v.CandidateStats.Samples > 200 {
		t.Errorf("the follower counted its own samples: %+v", v.CandidateStats)
	}
	pass()
	waitFor(t, "the follower to serve v1", func() bool { return follower.Decide("spam").State == router.Serving })
	ld, fd := leader.Decide("spam"), follower.Decide("spam")
	if fd.Version != 1 || fd.Student == nil || fd.Tau != ld.Tau {
		t.Errorf("the follower serves v%d at τ %v, the leader v%d at τ %v", fd.Version, fd.Tau, ld.Version, ld.Tau)
	}
}

// waitFor polls cond until it holds, for up to 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
	}
}

// fencedStore is the store of a leader that another replica deposed once
// fence is set: it refuses every routing write with storage.ErrFenced,
// as the NATS store does, and counts the writes tried.
type fencedStore struct {
	*storage.DB
	fence  atomic.Bool
	writes atomic.Int32
}

func (s *fencedStore) PutRoutingRecord(domain string, rec []byte) error {
	s.writes.Add(1)
	if s.fence.Load() {
		return fmt.Errorf("storing the routing record of %s: %w", domain, storage.ErrFenced)
	}
	return s.DB.PutRoutingRecord(domain, rec)
}

// gatedStore is a fencedStore whose RoutingRecords, once armed, reads the
// records and then waits for release: the moment between a resync's read
// and its apply.
type gatedStore struct {
	fencedStore
	armed         atomic.Bool
	read, release chan struct{}
}

func (s *gatedStore) RoutingRecords() (map[string][]byte, error) {
	m, err := s.DB.RoutingRecords()
	if s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.release
	}
	return m, err
}

// TestResyncKeepsTheNewerRecord: a record the new learner stores while a
// deposed leader reads the stored records back (its resync) is applied
// after that older copy, not overwritten by it.
func TestResyncKeepsTheNewerRecord(t *testing.T) {
	e := newEnv(t)
	store := &gatedStore{fencedStore: fencedStore{DB: e.db}, read: make(chan struct{}), release: make(chan struct{})}
	lr := &replicas{held: true, bus: make(chan []byte, 4096), watch: make(chan storage.RoutingChange, 4)}
	r, err := router.New(testConfig, router.Deps{Store: store, Shadow: e.submit, Replicas: lr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Lead(ctx) }()
	go func() { _ = r.Follow(ctx) }()
	waitFor(t, "leading", r.Leading)
	e.add(r, "spam", 1) // shadowing v1, stored
	r.Flush()

	store.fence.Store(true)
	store.armed.Store(true)
	if _, err := r.Act("spam", "pin-teacher"); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan struct{})
	go func() { defer close(flushed); r.Flush() }() // refused: it steps down and reads the records
	<-store.read
	// The new learner stores a newer record, which the watch delivers
	// while the resync holds the older one.
	newer := []byte(`{"state":"collecting"}`)
	if err := e.db.PutRoutingRecord("spam", newer); err != nil {
		t.Fatal(err)
	}
	lr.watch <- storage.RoutingChange{Domain: "spam", Record: newer}
	time.Sleep(50 * time.Millisecond) // the watch has it: without the lock it would apply it now
	close(store.release)
	<-flushed
	waitFor(t, "the newer record", func() bool { v, _ := r.View("spam"); return v.State == router.Collecting && len(lr.watch) == 0 })
	time.Sleep(50 * time.Millisecond)
	if v, _ := r.View("spam"); v.State != router.Collecting {
		t.Errorf("spam is %s after the resync, want the newer stored record's collecting", v.State)
	}
}

// TestDeposedLeaderStepsDown: a leader whose record write is refused
// (another replica took the lease while it was paused, its lease check
// still saying held) stops leading at once: it writes nothing more,
// refuses operator actions, sends its samples to the bus instead of its
// gate, answers as the stored records say rather than as its refused
// changes did (a domain with no stored record collects), and Lead
// returns when the term ends.
func TestDeposedLeaderStepsDown(t *testing.T) {
	e := newEnv(t)
	store := &fencedStore{DB: e.db}
	bus := make(chan []byte, 4096)
	lr := &replicas{held: true, bus: bus}
	leader, err := router.New(testConfig, router.Deps{Store: store, Shadow: e.submit, Replicas: lr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { _ = leader.Lead(ctx); close(done) }()
	waitFor(t, "the leader to lead", leader.Leading)
	e.add(leader, "spam", 1)
	leader.Flush()
	if n := store.writes.Load(); n != 1 {
		t.Fatalf("%d writes before the fence, want 1", n)
	}

	store.fence.Store(true)
	if _, err := leader.Act("spam", "pin-teacher"); err != nil {
		t.Fatal(err)
	}
	e.add(leader, "tone", 1) // a domain with no stored record
	leader.Flush()
	if leader.Leading() {
		t.Fatal("a leader whose write was fenced off still leads")
	}
	if v, _ := leader.View("spam"); v.State != router.Shadowing {
		t.Errorf("after stepping down spam is %s, want the stored shadowing", v.State)
	}
	if v, _ := leader.View("tone"); v.State != router.Collecting || v.Candidate != 0 {
		t.Errorf("after stepping down tone is %s with candidate v%d, want collecting as stored (no record)", v.State, v.Candidate)
	}
	if _, err := leader.Act("spam", "promote"); !errors.Is(err, router.ErrNotLeader) {
		t.Errorf("Act after stepping down: %v, want ErrNotLeader", err)
	}
	agree := shadow.Sample{Confidence: 1, Uniform: true, Agree: true, Teacher: "yes", Student: "yes"}
	for range 3 * router.PersistEvery {
		leader.Observe("spam", 1, agree)
	}
	leader.Flush()
	if n := store.writes.Load(); n != 2 {
		t.Errorf("%d writes tried, want 2: none after the refused one", n)
	}
	if len(bus) == 0 {
		t.Error("a deposed leader's samples did not go to the bus")
	}
	cancel()
	<-done
	recs, err := e.db.RoutingRecords()
	if err != nil {
		t.Fatal(err)
	}
	var rec router.Record
	if err := json.Unmarshal(recs["spam"], &rec); err != nil || rec.State != router.Shadowing {
		t.Errorf("stored record: %s, %v; want the one written before the fence", recs["spam"], err)
	}
}
