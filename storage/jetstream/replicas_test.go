package jetstream

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-dev/understudy/storage"
)

// quickReplicas shortens the announcement interval and the entries' TTL
// for a test: stores opened after it use them.
func quickReplicas(t *testing.T) {
	every, ttl := replicaEvery, replicaTTL
	replicaEvery, replicaTTL = 100*time.Millisecond, time.Second
	t.Cleanup(func() { replicaEvery, replicaTTL = every, ttl })
}

// announce runs s.Announce with counters as its report until the
// returned stop is called (or the store closes), and waits for it.
func announce(t *testing.T, s *Store, version string, counters storage.ReplicaCounters) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Announce(ctx, version, func() storage.ReplicaCounters { return counters }); err != nil {
			t.Errorf("Announce: %v", err)
		}
	}()
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}

// waitReplicas polls s.Replicas until ok accepts them: within a generous
// deadline, never a timing the test depends on.
func waitReplicas(t *testing.T, s *Store, what string, ok func([]storage.Replica) bool) []storage.Replica {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rs, err := s.Replicas(context.Background())
		if err == nil && ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: replicas %+v, err %v", what, rs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func routes(teacher, student int64) storage.ReplicaCounters {
	return storage.ReplicaCounters{Domains: map[string]storage.DomainCounters{
		"spam": {Routes: map[string]int64{"teacher": teacher, "student": student}, SavedDollars: float64(student) / 100},
	}}
}

// TestReplicas: three stores on one server as replicas. Each one's entry
// appears with its counters, their sums add up, a replica that stops
// cleanly leaves at once and one whose store closes without withdrawing
// (as if killed) leaves when its entry expires.
func TestReplicas(t *testing.T) {
	quickReplicas(t)
	ts := startServer(t, nil)
	reg := prometheus.NewRegistry()
	oa := testOptions(ts)
	oa.Registry = reg
	a := openStore(t, oa)
	b := openStore(t, testOptions(ts))
	c, err := Open(testOptions(ts))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	// a leads: its entry says so.
	lctx, lcancel := context.WithCancel(context.Background())
	led := make(chan struct{})
	go func() {
		defer close(led)
		_ = a.Lead(lctx, func(ctx context.Context) { <-ctx.Done() })
	}()
	t.Cleanup(func() { lcancel(); <-led })

	announce(t, a, "v1.2.3", routes(10, 5))
	stopB := announce(t, b, "", routes(7, 1))
	announce(t, c, "", routes(3, 0))

	rs := waitReplicas(t, b, "three replicas, a leading", func(rs []storage.Replica) bool {
		if len(rs) != 3 {
			return false
		}
		for _, r := range rs {
			if r.ID == a.Replica() && !r.Leader {
				return false
			}
		}
		return true
	})
	var teacher, student int64
	for i, r := range rs {
		teacher += r.Domains["spam"].Routes["teacher"]
		student += r.Domains["spam"].Routes["student"]
		if i > 0 && r.Started.Before(rs[i-1].Started) {
			t.Errorf("replicas not oldest first: %v before %v", rs[i-1].Started, r.Started)
		}
		if r.Host == "" || r.PID == 0 || r.LastSeen.IsZero() || r.Started.IsZero() {
			t.Errorf("replica %+v: host, pid, started and last seen must be set", r)
		}
		switch r.ID {
		case a.Replica():
			if r.Version != "v1.2.3" {
				t.Errorf("a's version = %q", r.Version)
			}
		case b.Replica(), c.Replica():
			if r.Leader {
				t.Errorf("replica %s says it leads; a does", r.ID)
			}
		default:
			t.Errorf("unknown replica %q", r.ID)
		}
	}
	if teacher != 20 || student != 6 {
		t.Errorf("summed routes: teacher %d, student %d; want 20, 6", teacher, student)
	}

	// Counters are re-read at each announcement.
	a.Log(storage.Pair{Domain: "spam", Input: "hi", Answer: "ham", Label: "ham"})
	waitReplicas(t, b, "a's logged pair in its entry", func(rs []storage.Replica) bool {
		for _, r := range rs {
			if r.ID == a.Replica() {
				return r.PairsLogged == 1 && r.PairsDropped == 0
			}
		}
		return false
	})

	stopB()
	waitReplicas(t, a, "b gone after a clean stop", func(rs []storage.Replica) bool { return len(rs) == 2 })

	if err := c.Close(); err != nil { // no withdrawal: the entry expires
		t.Fatal(err)
	}
	// a's own entry may lapse for a moment on a loaded machine (a late
	// announcement): wait for the state, not for the first list of one.
	waitReplicas(t, a, "c's entry expired, a's left", func(rs []storage.Replica) bool { return len(rs) == 1 && rs[0].ID == a.Replica() })
	deadline := time.Now().Add(60 * time.Second)
	for testutil.ToFloat64(a.m.replicas) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("understudy_replicas = %v, want 1", testutil.ToFloat64(a.m.replicas))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReplicaKey: any replica ID, whatever its host name, is a valid key.
func TestReplicaKey(t *testing.T) {
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	for _, id := range []string{"host/1/ABCDEFGH", "höst name.example/42/x", "a.b/1/z", "/"} {
		k := replicaKey(id)
		if !valid.MatchString(k) || k[0] == '.' || k[len(k)-1] == '.' {
			t.Errorf("replicaKey(%q) = %q: not a valid key", id, k)
		}
	}
}
