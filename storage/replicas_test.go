package storage

import (
	"context"
	"testing"
)

// TestSoloReplica: the embedded DB's replica set is this process, once it
// announced itself, with its counters as of each call, and empty again
// after.
func TestSoloReplica(t *testing.T) {
	db, _ := open(t, DefaultOptions())
	ctx := context.Background()
	if rs, err := db.Replicas(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("before Announce: %v, %v; want none", rs, err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	n := int64(0)
	report := func() ReplicaCounters {
		n++
		return ReplicaCounters{Domains: map[string]DomainCounters{"spam": {Routes: map[string]int64{"teacher": n}}}}
	}
	started := make(chan struct{})
	go func() {
		defer close(done)
		close(started)
		_ = db.Announce(actx, "v9", report)
	}()
	<-started
	if !db.Log(Pair{Domain: "spam", Input: "x", Answer: "ham", Label: "ham"}) || db.Log(Pair{Domain: "bad domain"}) {
		t.Fatal("Log: want one pair logged, one dropped")
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var rs []Replica
	for len(rs) == 0 { // Announce runs in its goroutine
		var err error
		if rs, err = db.Replicas(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := rs[0]
	if len(rs) != 1 || r.ID != db.Replica() || !r.Leader || r.Version != "v9" || r.PairsLogged != 1 || r.PairsDropped != 1 || r.Started.IsZero() {
		t.Errorf("Replicas = %+v; want this process, leading, v9, 1 pair logged and 1 dropped", rs)
	}
	if got := r.Domains["spam"].Routes["teacher"]; got != n {
		t.Errorf("counters read at the call: teacher %d, want %d", got, n)
	}
	cancel()
	<-done
	if rs, _ := db.Replicas(ctx); len(rs) != 0 {
		t.Errorf("after Announce returned: %v; want none", rs)
	}
}
