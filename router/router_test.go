package router_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// model trains a real (tiny) student once for the tests.
var model struct {
	once sync.Once
	a    *student.Artifact
	err  error
}

func loader(t *testing.T) func(string, int) (*student.Model, error) {
	t.Helper()
	model.once.Do(func() {
		if model.err = student.InitRuntime(""); model.err != nil {
			return
		}
		var ex []trainer.Example
		for i := range 300 {
			label := []string{"yes", "no"}[i%2]
			ex = append(ex, trainer.Example{Text: fmt.Sprintf("%s %d", strings.Repeat(label+" ", 3), i), Label: label, Answer: label})
		}
		opts := trainer.DefaultOptions()
		opts.Featurizer.BucketBits, opts.Dim = 10, 8
		model.a, model.err = trainer.Train(context.Background(), ex, opts)
	})
	if model.err != nil {
		t.Fatal(model.err)
	}
	return func(domain string, v int) (*student.Model, error) {
		a := *model.a
		a.Domain, a.Version = domain, v
		return student.Load(&a, 1)
	}
}

type saved struct {
	mu      sync.Mutex
	records map[string]router.Record
}

func (s *saved) persist(d string, rec router.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := router.MarshalRecord(rec) // as stored
	r, err := router.UnmarshalRecord(b)
	s.records[d] = r
	return err
}

func newRouter(t *testing.T, s *saved, records map[string]router.Record) *router.Router {
	return router.New(router.Config{Gate: shadow.Gate{Threshold: 0.95, Confidence: 0.95, MinSamples: 50}, ShadowRate: 0.05, FallbackToStudent: true},
		router.Deps{Load: loader(t), Persist: s.persist}, records)
}

func TestLifecycle(t *testing.T) {
	s := &saved{records: map[string]router.Record{}}
	r := newRouter(t, s, nil)
	if d := r.Decide("spam"); d.State != router.Collecting || d.Student != nil || d.Candidate != nil {
		t.Fatalf("new domain: %+v", d)
	}
	if m, _ := r.Fallback("spam"); m != nil {
		t.Error("a domain without a promoted student has a fallback")
	}
	if err := r.AddVersion("spam", 1); err != nil {
		t.Fatal(err)
	}
	d := r.Decide("spam")
	if d.State != router.Shadowing || d.Student != nil || d.Candidate == nil || d.CandidateVersion != 1 {
		t.Fatalf("after v1: %+v", d)
	}
	agree := shadow.Sample{Confident: true, Agree: true, Teacher: "yes", Student: "yes"}
	for i := 0; i < 1000 && r.Decide("spam").State != router.Serving; i++ {
		r.Observe("spam", 1, agree)
	}
	d = r.Decide("spam")
	if d.State != router.Serving || d.Student == nil || d.Version != 1 || d.Candidate != nil {
		t.Fatalf("after agreeing samples: %+v", d)
	}
	if m, v := r.Fallback("spam"); m == nil || v != 1 {
		t.Error("a serving domain has no fallback")
	}
	// A restart keeps the state, from what was persisted.
	r2 := newRouter(t, s, s.records)
	if d := r2.Decide("spam"); d.State != router.Serving || d.Version != 1 {
		t.Fatalf("after a restart: %+v", d)
	}
	// Drift: the serving version is demoted.
	disagree := shadow.Sample{Confident: true, Agree: false, Teacher: "no", Student: "yes"}
	for i := 0; i < 500 && r.Decide("spam").State == router.Serving; i++ {
		r.Observe("spam", 1, disagree)
	}
	if d := r.Decide("spam"); d.State == router.Serving || d.Student != nil {
		t.Fatalf("after disagreeing samples: %+v", d)
	}
	v, _ := r.View("spam")
	if n := len(v.Transitions); n < 3 || !strings.Contains(v.Transitions[n-1].Reason, "drifted") ||
		!strings.Contains(v.Transitions[n-2].Reason, "passed the gate") {
		t.Errorf("transitions %+v", v.Transitions)
	}
}

func TestActions(t *testing.T) {
	s := &saved{records: map[string]router.Record{}}
	r := newRouter(t, s, nil)
	if _, err := r.Act("d", "promote"); err == nil {
		t.Error("promote without a student succeeded")
	}
	if err := r.AddVersion("d", 3); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		action string
		want   router.State
	}{
		{"promote", router.Serving}, {"pin-teacher", router.PinnedTeacher}, {"unpin", router.Serving},
		{"pin-student", router.PinnedStudent}, {"unpin", router.Serving}, {"demote", router.Shadowing},
	} {
		rec, err := r.Act("d", step.action)
		if err != nil || rec.State != step.want {
			t.Fatalf("%s: state %s, err %v; want %s", step.action, rec.State, err, step.want)
		}
	}
	r.Act("d", "pin-teacher")
	if d := r.Decide("d"); d.Student != nil || d.Candidate != nil {
		t.Errorf("pinned to the teacher, the decision still involves a student: %+v", d)
	}
	if _, err := r.Act("d", "explode"); err == nil {
		t.Error("unknown action accepted")
	}
	r.SetOpenEnded("d", "answers are open-ended")
	if d := r.Decide("d"); d.State != router.OpenEnded || d.Student != nil || d.Candidate != nil {
		t.Errorf("open-ended: %+v", d)
	}
	if s.records["d"].State != router.OpenEnded {
		t.Errorf("persisted state %s", s.records["d"].State)
	}
}

// TestShadowMaxRate: a shadowing candidate is offered for scoring on at most
// about ShadowMaxRate requests per second of its domain, each domain on its
// own budget; the teacher still answers them all.
func TestShadowMaxRate(t *testing.T) {
	s := &saved{records: map[string]router.Record{}}
	r := router.New(router.Config{Gate: shadow.Gate{MinSamples: 50}, ShadowMaxRate: 20},
		router.Deps{Load: loader(t), Persist: s.persist}, nil)
	for _, d := range []string{"a", "b"} {
		if err := r.AddVersion(d, 1); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	offered := map[string]int{}
	for range 1000 {
		for _, d := range []string{"a", "b"} {
			dec := r.Decide(d)
			if dec.State != router.Shadowing {
				t.Fatalf("%s: %+v", d, dec)
			}
			if dec.Candidate != nil {
				offered[d]++
			}
		}
	}
	// The burst (20) plus what refills while the loop runs.
	limit := 20 + int(20*time.Since(start).Seconds()) + 1
	for _, d := range []string{"a", "b"} {
		if offered[d] < 20 || offered[d] > limit {
			t.Errorf("%s: candidate offered on %d of 1000 requests, want 20..%d", d, offered[d], limit)
		}
	}
}
