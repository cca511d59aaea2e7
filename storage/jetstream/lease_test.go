package jetstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// leaseRun is one replica running for the lease in a test.
type leaseRun struct {
	s      *Store
	cancel context.CancelFunc
	done   chan struct{}
	terms  atomic.Int32 // terms begun
}

// TestLeaseOneHolderAndTakeover runs three replicas for the learner lease
// on one server: exactly one holds it at any time (the terms never
// overlap, and Held is true on one replica only); when its holder stops,
// another takes it at once, and when the holder's store dies without
// releasing it (a crash: it closes with the lease still in the bucket),
// another takes it once the entry expires.
func TestLeaseOneHolderAndTakeover(t *testing.T) {
	ts := startServer(t, nil)
	const ttl = 2 * time.Second
	var (
		mu      sync.Mutex
		holding int
		overlap bool
	)
	runs := make([]*leaseRun, 3)
	for i := range runs {
		o := testOptions(ts)
		o.LeaseTTL = ttl
		s, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &leaseRun{s: s, cancel: cancel, done: make(chan struct{})}
		runs[i] = r
		go func() {
			defer close(r.done)
			_ = s.Lead(ctx, func(term context.Context) {
				r.terms.Add(1)
				mu.Lock()
				holding++
				overlap = overlap || holding > 1
				mu.Unlock()
				<-term.Done()
				mu.Lock()
				holding--
				mu.Unlock()
			})
		}()
	}
	t.Cleanup(func() {
		for _, r := range runs {
			r.cancel()
			<-r.done
			_ = r.s.Close()
		}
	})
	holder := func(except ...*leaseRun) *leaseRun {
		t.Helper()
		began := time.Now()
		for deadline := began.Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var held []*leaseRun
			for _, r := range runs {
				if r.s.Held() {
					held = append(held, r)
				}
			}
			if len(held) > 1 {
				t.Fatalf("%d replicas hold the lease at once", len(held))
			}
			if len(held) == 1 && !contains(except, held[0]) {
				t.Logf("lease taken after %v", time.Since(began).Round(10*time.Millisecond))
				return held[0]
			}
		}
		t.Fatal("no replica took the lease within 30s")
		return nil
	}
	first := holder()

	// A clean stop releases the lease: another takes it at once.
	first.cancel()
	<-first.done
	if first.s.Held() {
		t.Error("a replica that stopped leading still holds the lease")
	}
	second := holder(first)

	// A crash: the holder's store closes under it, the lease stays in the
	// bucket until it expires.
	_ = second.s.Close()
	<-second.done
	third := holder(first, second)
	// Its term begins just after it counts the lease held.
	for deadline := time.Now().Add(30 * time.Second); third.terms.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Error("two replicas' terms overlapped")
	}
	if n := third.terms.Load(); n != 1 {
		t.Errorf("the last holder began %d terms, want 1", n)
	}
}

func contains(rs []*leaseRun, r *leaseRun) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// TestLeaseLostWhenAnotherWrites: a holder whose entry another writer
// replaced (as after an expiry it did not notice) ends its term and stops
// counting the lease held.
func TestLeaseLostWhenAnotherWrites(t *testing.T) {
	ts := startServer(t, nil)
	o := testOptions(ts)
	o.LeaseTTL = 2 * time.Second
	s := openStore(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		first := true
		_ = s.Lead(ctx, func(term context.Context) {
			<-term.Done()
			if first {
				first = false
				close(ended)
			}
		})
	}()
	for deadline := time.Now().Add(30 * time.Second); !s.Held(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not taken within 30s")
		}
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	if _, err := s.kvLease.Put(pctx, leaseKey, []byte(`{"holder":"someone else"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the term did not end within 30s of another replica writing the lease")
	}
	if s.Held() {
		t.Error("Held after the lease was lost")
	}
	cancel()
	<-done
}

// TestSamplesReachAnotherReplica: a sample one replica publishes reaches
// the Samples of another; samples published before Samples was called
// are not delivered.
func TestSamplesReachAnotherReplica(t *testing.T) {
	ts := startServer(t, nil)
	a, b := openStore(t, testOptions(ts)), openStore(t, testOptions(ts))
	if !b.PublishSample([]byte("before")) {
		t.Fatal("PublishSample dropped a sample")
	}
	// Wait until the stream holds it, so that "from now on" excludes it.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		info, err := a.js.Stream(context.Background(), a.names.samples)
		if err == nil {
			if si, err := info.Info(context.Background()); err == nil && si.State.Msgs == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream did not hold the first sample within 30s")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := a.Samples(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "two"} {
		if !b.PublishSample([]byte(m)) {
			t.Fatal("PublishSample dropped a sample")
		}
	}
	for _, want := range []string{"one", "two"} {
		select {
		case got := <-ch:
			if string(got) != want {
				t.Fatalf("got sample %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("sample %q did not arrive within 30s", want)
		}
	}
	cancel()
	for range ch { // closed once ctx ended
	}
}
