package shadow

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/understudy-dev/understudy/student"
)

// echo predicts each text as its own label, confidently, and records the
// size of every batch it is asked for.
type echo struct {
	mu      sync.Mutex
	batches []int
}

func (e *echo) PredictBatch(texts []string) ([]student.Prediction, error) {
	e.mu.Lock()
	e.batches = append(e.batches, len(texts))
	e.mu.Unlock()
	out := make([]student.Prediction, len(texts))
	for i, t := range texts {
		out[i] = student.Prediction{Label: t, Confidence: 0.97, Confident: true}
	}
	return out, nil
}

type collected struct {
	mu      sync.Mutex
	samples map[string][]Sample // by domain/version
	n       int
	more    chan struct{}
}

func collector() *collected {
	return &collected{samples: map[string][]Sample{}, more: make(chan struct{}, 1)}
}

func (c *collected) sink(domain string, version int, s Sample) {
	c.mu.Lock()
	k := domain + "@" + string(rune('0'+version))
	c.samples[k] = append(c.samples[k], s)
	c.n++
	c.mu.Unlock()
	select {
	case c.more <- struct{}{}:
	default:
	}
}

func (c *collected) wait(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := c.n
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-c.more:
		case <-deadline:
			t.Fatalf("scored %d samples, want %d", got, n)
		}
	}
}

func runPool(t *testing.T, cfg PoolConfig, reg prometheus.Registerer) *Pool {
	t.Helper()
	p := NewPool(cfg, PoolDeps{Registry: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return p
}

// TestPoolScoresInBatches: every job is scored against the right model and
// label, a burst is predicted in few batches of at most Batch, and a lone
// job is scored too (after Linger).
func TestPoolScoresInBatches(t *testing.T) {
	c := collector()
	a, b := &echo{}, &echo{}
	p := runPool(t, PoolConfig{Batch: 32, Linger: 50 * time.Millisecond}, nil)
	const n = 200
	for i := range n {
		m, v := Predictor(a), 1
		if i%4 == 0 {
			m, v = b, 2
		}
		label := "x"
		if i%3 == 0 {
			label = "y" // the echo says "x": a disagreement
		}
		if !p.Submit(Job{Domain: "d", Version: v, Model: m, Input: "x", Label: label, Uniform: true, Sink: c.sink}) {
			t.Fatalf("job %d dropped", i)
		}
	}
	c.wait(t, n)
	c.mu.Lock()
	v1, v2 := c.samples["d@1"], c.samples["d@2"]
	c.mu.Unlock()
	if len(v1) != 150 || len(v2) != 50 {
		t.Errorf("samples per version: %d and %d, want 150 and 50", len(v1), len(v2))
	}
	agree := 0
	for _, s := range append(v1, v2...) {
		if s.Agree {
			agree++
		}
		if s.Agree != (s.Teacher == "x") || s.Student != "x" || s.Confidence != 0.97 || !s.Uniform {
			t.Errorf("sample %+v", s)
		}
	}
	if agree != n-(n+2)/3 {
		t.Errorf("%d agreements, want %d", agree, n-(n+2)/3)
	}
	calls := 0
	for _, e := range []*echo{a, b} {
		e.mu.Lock()
		for _, size := range e.batches {
			if size > 32 {
				t.Errorf("batch of %d, want at most 32", size)
			}
		}
		calls += len(e.batches)
		e.mu.Unlock()
	}
	if calls > 20 {
		t.Errorf("%d predictions for a burst of %d jobs, want them batched", calls, n)
	}

	p.Submit(Job{Domain: "lone", Version: 1, Model: a, Input: "x", Label: "x", Sink: c.sink})
	c.wait(t, n+1)
}

func TestPoolDropsWhenFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPool(PoolConfig{QueueSize: 3}, PoolDeps{Registry: reg}) // not running: nothing leaves
	for i := range 5 {
		want := i < 3
		if got := p.Submit(Job{Domain: "d", Model: &echo{}}); got != want {
			t.Errorf("Submit %d = %v, want %v", i, got, want)
		}
	}
	if got := testutil.ToFloat64(p.dropped); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
	p.Close()
	if p.Submit(Job{Domain: "d", Model: &echo{}}) {
		t.Error("Submit after Close = true")
	}
}
