package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is retention's clock in tests: it moves only when asked, by
// step on every reading and by what a sleep sleeps, and records the sleeps.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	step   time.Duration
	sleeps []time.Duration
	// onSleep runs at each sleep, outside mu (e.g. to log pairs while a
	// pass is under way).
	onSleep func()
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.t = c.t.Add(d)
	f := c.onSleep
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return ctx.Err()
}

func (c *fakeClock) slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// logOver logs n pairs to domain d, labelled by i%3, each a millisecond
// newer than the last, beginning at t0.
func logOver(t *testing.T, db *DB, t0 time.Time, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		mustLog(t, db, Pair{Domain: "d", Time: t0.Add(time.Duration(i) * time.Millisecond), Input: fmt.Sprint(i), Label: fmt.Sprint("l", i%3)})
	}
	flush(t, db)
}

// TestRetentionPacing: a pass deletes a chunk per transaction and after
// each (before the next or before value-log GC) pauses for the longest of
// the least pause, the time the chunk took, and what keeps it under the
// rate.
func TestRetentionPacing(t *testing.T) {
	tests := []struct {
		name       string
		rate       float64
		pause      time.Duration
		step       time.Duration // the clock moves this much per reading: a chunk takes step
		excess     int
		wantSleeps int
		wantSleep  time.Duration // each
	}{
		// 50 pairs at 1,000/s: 50 ms a chunk.
		{"rate", 1000, 5 * time.Millisecond, 0, 500, 10, 50 * time.Millisecond},
		// A chunk that took 20 ms of a 50 ms slot waits the other 30 ms.
		{"rate less the chunk's time", 1000, 5 * time.Millisecond, 20 * time.Millisecond, 500, 10, 30 * time.Millisecond},
		// Rate high: the least pause.
		{"least pause", 1e9, 5 * time.Millisecond, 0, 500, 10, 5 * time.Millisecond},
		// A slow chunk (a busy machine) waits as long as it took.
		{"slow chunks", 1e9, 5 * time.Millisecond, 80 * time.Millisecond, 500, 10, 80 * time.Millisecond},
		// Less than a chunk over the cap: 30 pairs at 1,000/s.
		{"one chunk", 1000, 5 * time.Millisecond, 0, 30, 1, 30 * time.Millisecond},
		// RetentionRate negative: never pauses.
		{"unpaced", 0, 0, 10 * time.Millisecond, 500, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			const capN, chunk = 100, 50
			db, reg := open(t, Options{
				pace: &pacing{
					chunk: chunk, rate: tt.rate, pause: tt.pause, gcPause: time.Second,
					now: clock.now, sleep: clock.sleep,
				},
				LogOptions: LogOptions{MaxPairsPerDomain: capN, TTL: -1},
			})
			logOver(t, db, time.Now().Add(-time.Hour), 0, capN+tt.excess)
			clock.step = tt.step
			if err := db.RunRetention(); err != nil {
				t.Fatal(err)
			}
			// Value-log GC finds nothing to do here, so every sleep
			// follows a chunk.
			sleeps := clock.slept()
			if len(sleeps) != tt.wantSleeps {
				t.Fatalf("slept %d times (%v), want %d: once after each of %d chunks", len(sleeps), sleeps, tt.wantSleeps, (tt.excess+chunk-1)/chunk)
			}
			for i, d := range sleeps {
				if d != tt.wantSleep {
					t.Errorf("sleep %d: %s, want %s", i, d, tt.wantSleep)
				}
			}
			if got := metric(t, reg, "understudy_storage_retention_deleted_total", "reason", "cap"); got != float64(tt.excess) {
				t.Errorf("deleted %v, want %d", got, tt.excess)
			}
			checkCounts(t, db, "d")
		})
	}
}

// TestRetentionRateFollowsWrites: a pass deletes at least twice as fast as
// pairs were written since the previous one, whatever RetentionRate says,
// so that the log converges to its cap.
func TestRetentionRateFollowsWrites(t *testing.T) {
	clock := newFakeClock()
	db, _ := open(t, Options{
		pace: &pacing{
			chunk: 100, rate: 10, pause: time.Millisecond, gcPause: time.Second,
			now: clock.now, sleep: clock.sleep,
		},
		LogOptions: LogOptions{MaxPairsPerDomain: 100, TTL: -1},
	})
	t0 := time.Now().Add(-time.Hour)
	if err := db.RunRetention(); err != nil { // the first pass has no write rate to go by
		t.Fatal(err)
	}
	logOver(t, db, t0, 0, 1100)
	clock.step = time.Second // 1,100 pairs in a second since that pass
	clock.now()
	clock.step = 0
	if err := db.RunRetention(); err != nil {
		t.Fatal(err)
	}
	// 2 x 1,100 pairs/s: 100 pairs per 45.45 ms, not per 10 s.
	n, rate := 100.0, 2200.0
	want := time.Duration(n / rate * float64(time.Second))
	sleeps := clock.slept()
	if len(sleeps) != 10 {
		t.Fatalf("slept %d times (%v), want 10", len(sleeps), sleeps)
	}
	for i, d := range sleeps {
		if d != want {
			t.Errorf("sleep %d: %s, want %s", i, d, want)
		}
	}
	checkCounts(t, db, "d")
}

// TestRetentionConverges: a domain over the cap by many chunks, logged to
// while a pass deletes, comes down to the cap, keeping the newest pairs and
// exact counts: the first pass deletes the excess it found, the second what
// came in meanwhile.
func TestRetentionConverges(t *testing.T) {
	clock := newFakeClock()
	const capN, chunk, excess, perSleep = 200, 50, 2000, 7
	db, reg := open(t, Options{
		pace: &pacing{
			chunk: chunk, rate: 1000, pause: time.Millisecond, gcPause: time.Second,
			now: clock.now, sleep: clock.sleep,
		},
		LogOptions: LogOptions{MaxPairsPerDomain: capN, TTL: -1},
	})
	t0 := time.Now().Add(-time.Hour)
	logOver(t, db, t0, 0, capN+excess)
	n := capN + excess
	clock.onSleep = func() { // the gateway goes on logging between chunks
		logOver(t, db, t0, n, perSleep)
		n += perSleep
	}
	if err := db.RunRetention(); err != nil {
		t.Fatal(err)
	}
	clock.onSleep = nil
	sleeps := len(clock.slept())
	if want := excess / chunk; sleeps != want {
		t.Fatalf("slept %d times, want %d (once after each chunk)", sleeps, want)
	}
	checkCounts(t, db, "d")
	if got, want := mustDomain(t, db, "d").Pairs, int64(capN+sleeps*perSleep); got != want {
		t.Fatalf("after the first pass: %d pairs, want %d (the cap and those logged during the pass)", got, want)
	}

	if err := db.RunRetention(); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, db, "d")
	ps := allPairs(t, db, "d")
	if len(ps) != capN {
		t.Fatalf("after the second pass: %d pairs, want the cap, %d", len(ps), capN)
	}
	if ps[0].Input != fmt.Sprint(n-capN) || ps[len(ps)-1].Input != fmt.Sprint(n-1) {
		t.Errorf("kept %s..%s, want the newest, %d..%d", ps[0].Input, ps[len(ps)-1].Input, n-capN, n-1)
	}
	if got := metric(t, reg, "understudy_storage_retention_deleted_total", "reason", "cap"); got != float64(n-capN) {
		t.Errorf("deleted %v, want %d", got, n-capN)
	}
}

// TestCloseDuringRetention: Close during a long, paced pass ends it at the
// next pause instead of waiting for it, and what it deleted is counted.
func TestCloseDuringRetention(t *testing.T) {
	dir := t.TempDir()
	deleting := make(chan struct{})
	var once sync.Once
	db, err := Open(Options{
		Dir:    dir,
		Logger: quietLogger(),
		pace: &pacing{
			// 2,000 pairs at one a minute: a pass that would take 33 hours.
			chunk: 1, rate: 1.0 / 60, pause: time.Millisecond, gcPause: time.Second,
			now: time.Now,
			sleep: func(ctx context.Context, d time.Duration) error {
				once.Do(func() { close(deleting) })
				return sleepCtx(ctx, d)
			},
		},
		LogOptions: LogOptions{MaxPairsPerDomain: 10, TTL: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	logOver(t, db, time.Now().Add(-time.Hour), 0, 2010)
	done := make(chan error, 1)
	go func() { done <- db.RunRetention() }()
	<-deleting
	// Close waits for the pass to return: without its pauses ending on
	// Close, this would take 33 hours (the test's timeout).
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunRetention = %v, want context.Canceled", err)
	}

	db2, _ := open(t, Options{Dir: dir, LogOptions: LogOptions{MaxPairsPerDomain: 10, TTL: -1}})
	checkCounts(t, db2, "d")
	if n := mustDomain(t, db2, "d").Pairs; n != 2009 {
		t.Errorf("%d pairs after Close, want 2,009: the pass deleted one pair before it paused", n)
	}
}
