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
	jobs    []shadow.Job // submitted to the shadow
}

func (s *saved) submit(j shadow.Job) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = append(s.jobs, j)
	return true
}

// submitted returns the jobs submitted so far and forgets them.
func (s *saved) submitted() []shadow.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs
	s.jobs = nil
	return j
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
		router.Deps{Load: loader(t), Persist: s.persist, Shadow: s.submit}, records)
}

func TestLifecycle(t *testing.T) {
	s := &saved{records: map[string]router.Record{}}
	r := newRouter(t, s, nil)
	if d := r.Decide("spam"); d.State != router.Collecting || d.Student != nil || d.Fallback != nil {
		t.Fatalf("new domain: %+v", d)
	}
	if err := r.AddVersion("spam", 1); err != nil {
		t.Fatal(err)
	}
	d := r.Decide("spam")
	if v, _ := r.View("spam"); d.State != router.Shadowing || d.Student != nil || d.Fallback != nil || v.Candidate != 1 {
		t.Fatalf("after v1: %+v, shadow version %d", d, v.Candidate)
	}
	agree := shadow.Sample{Confident: true, Agree: true, Teacher: "yes", Student: "yes"}
	for i := 0; i < 1000 && r.Decide("spam").State != router.Serving; i++ {
		r.Observe("spam", 1, agree)
	}
	d = r.Decide("spam")
	if v, _ := r.View("spam"); d.State != router.Serving || d.Student == nil || d.Version != 1 || v.Candidate != 0 {
		t.Fatalf("after agreeing samples: %+v, shadow version %d", d, v.Candidate)
	}
	if d.Fallback == nil || d.FallbackVersion != 1 {
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
	s.submitted()
	r.Answered(router.Outcome{Domain: "d", Route: router.RouteTeacher, Input: "yes", Teacher: "yes"})
	if d, jobs := r.Decide("d"), s.submitted(); d.Student != nil || d.Fallback != nil || len(jobs) != 0 {
		t.Errorf("pinned to the teacher, the decision still involves a student: %+v, %d shadow jobs", d, len(jobs))
	}
	if _, err := r.Act("d", "explode"); err == nil {
		t.Error("unknown action accepted")
	}
	r.SetOpenEnded("d", "answers are open-ended")
	r.Answered(router.Outcome{Domain: "d", Route: router.RouteTeacher, Input: "yes", Teacher: "yes"})
	if d, jobs := r.Decide("d"), s.submitted(); d.State != router.OpenEnded || d.Student != nil || d.Fallback != nil || len(jobs) != 0 {
		t.Errorf("open-ended: %+v, %d shadow jobs", d, len(jobs))
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
		router.Deps{Load: loader(t), Persist: s.persist, Shadow: s.submit}, nil)
	for _, d := range []string{"a", "b"} {
		if err := r.AddVersion(d, 1); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for range 1000 {
		for _, d := range []string{"a", "b"} {
			if dec := r.Decide(d); dec.State != router.Shadowing {
				t.Fatalf("%s: %+v", d, dec)
			}
			r.Answered(router.Outcome{Domain: d, Route: router.RouteTeacher, Input: "yes", Teacher: "yes"})
		}
	}
	offered := map[string]int{}
	for _, j := range s.submitted() {
		offered[j.Domain]++
	}
	// The burst (20) plus what refills while the loop runs.
	limit := 20 + int(20*time.Since(start).Seconds()) + 1
	for _, d := range []string{"a", "b"} {
		if offered[d] < 20 || offered[d] > limit {
			t.Errorf("%s: candidate offered on %d of 1000 requests, want 20..%d", d, offered[d], limit)
		}
	}
}

// TestAnswered: the one call after each answered request counts its route,
// scores the serving version's prediction against the teacher's label, and
// hands the candidate version to the shadow with that label; the job's sink
// records the candidate's sample. Answers without a teacher label are
// counted and nothing more.
func TestAnswered(t *testing.T) {
	s := &saved{records: map[string]router.Record{}}
	r := newRouter(t, s, nil)
	if err := r.AddVersion("d", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Act("d", "promote"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddVersion("d", 2); err != nil {
		t.Fatal(err)
	}
	yes := student.Prediction{Label: "yes", Answer: "yes", Confidence: 0.99, Confident: true}
	for _, o := range []router.Outcome{
		{Route: router.RouteStudent},
		{Route: router.RouteFallback},
		{Route: router.RouteTeacher, Input: "maybe"},
		{Route: router.RouteDeferred, Input: "no no", Teacher: "no", Student: yes, Version: 1},
		{Route: router.RouteTeacher, Input: "yes yes", Teacher: "yes", Student: yes, Version: 1},
	} {
		o.Domain = "d"
		r.Answered(o)
	}
	v, _ := r.View("d")
	want := map[router.Route]int64{router.RouteStudent: 1, router.RouteFallback: 1, router.RouteTeacher: 2, router.RouteDeferred: 1}
	if fmt.Sprint(v.Routes) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", v.Routes, want)
	}
	if st := v.ServingStats; st == nil || st.Samples != 2 || st.Agree != 1 {
		t.Errorf("serving version's samples: %+v, want 2 with 1 agreement", st)
	}
	jobs := s.submitted()
	if len(jobs) != 2 || jobs[0].Version != 2 || jobs[0].Label != "no" || jobs[0].Input != "no no" || jobs[1].Label != "yes" {
		t.Fatalf("shadow jobs %+v, want v2 on (no no, no) and (yes yes, yes)", jobs)
	}
	for _, j := range jobs {
		j.Sink(j.Domain, j.Version, shadow.SampleOf(yes, j.Label))
	}
	if v, _ := r.View("d"); v.CandidateStats == nil || v.CandidateStats.Samples != 2 || v.CandidateStats.Agree != 1 {
		t.Errorf("candidate's samples: %+v, want 2 with 1 agreement", v.CandidateStats)
	}
}
