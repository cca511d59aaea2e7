package router_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// model trains a real (tiny) student once for the tests.
var model struct {
	once sync.Once
	a    *student.Artifact
	err  error
}

// env is a router's world in a test: a real store in a temp dir and the
// jobs submitted to the shadow.
type env struct {
	t  *testing.T
	db *storage.DB

	mu   sync.Mutex
	jobs []shadow.Job // submitted to the shadow
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, err := storage.Open(storage.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &env{t: t, db: db}
}

// version returns version v of a domain's student, trained and stored as
// the trainer does.
func (e *env) version(domain string, v int) *student.Artifact {
	e.t.Helper()
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
		e.t.Fatal(model.err)
	}
	a := *model.a
	a.Domain, a.Version = domain, v
	blob, err := a.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.PutStudent(domain, v, []byte("{}"), blob); err != nil {
		e.t.Fatal(err)
	}
	return &a
}

func (e *env) add(r *router.Router, domain string, v int) {
	e.t.Helper()
	if err := r.AddVersion(e.version(domain, v), nil); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) submit(j shadow.Job) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.jobs = append(e.jobs, j)
	return true
}

// submitted returns the jobs submitted so far and forgets them.
func (e *env) submitted() []shadow.Job {
	e.mu.Lock()
	defer e.mu.Unlock()
	j := e.jobs
	e.jobs = nil
	return j
}

// stored returns the routing record of a domain as the store holds it.
func (e *env) stored(r *router.Router, domain string) router.Record {
	e.t.Helper()
	r.Flush()
	recs, err := e.db.RoutingRecords()
	if err != nil {
		e.t.Fatal(err)
	}
	var rec router.Record
	if err := json.Unmarshal(recs[domain], &rec); err != nil {
		e.t.Fatalf("record of %s: %v", domain, err)
	}
	return rec
}

func (e *env) router(cfg router.Config) *router.Router {
	e.t.Helper()
	r, err := router.New(cfg, router.Deps{Store: e.db, Shadow: e.submit})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

var testConfig = router.Config{Gate: shadow.Gate{Threshold: 0.95, Confidence: 0.95, MinSamples: 50}, ShadowRate: 0.05, FallbackToStudent: true}

func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	r := e.router(testConfig)
	if d := r.Decide("spam"); d.State != router.Collecting || d.Student != nil || d.Fallback != nil {
		t.Fatalf("new domain: %+v", d)
	}
	e.add(r, "spam", 1)
	d := r.Decide("spam")
	if v, _ := r.View("spam"); d.State != router.Shadowing || d.Student != nil || d.Fallback != nil || v.Candidate != 1 {
		t.Fatalf("after v1: %+v, shadow version %d", d, v.Candidate)
	}
	agree := shadow.Sample{Confidence: 1, Uniform: true, Agree: true, Teacher: "yes", Student: "yes"}
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
	// A restart keeps the state, from what was stored.
	r.Flush()
	r2 := e.router(testConfig)
	if d := r2.Decide("spam"); d.State != router.Serving || d.Version != 1 {
		t.Fatalf("after a restart: %+v", d)
	}
	// Drift: the serving version is demoted.
	disagree := shadow.Sample{Confidence: 1, Uniform: true, Agree: false, Teacher: "no", Student: "yes"}
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
	e := newEnv(t)
	r := e.router(testConfig)
	if _, err := r.Act("d", "promote"); err == nil {
		t.Error("promote without a student succeeded")
	}
	e.add(r, "d", 3)
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
	e.submitted()
	r.Answered(router.Outcome{Domain: "d", Route: router.RouteTeacher, Input: "yes", Teacher: "yes"})
	if d, jobs := r.Decide("d"), e.submitted(); d.Student != nil || d.Fallback != nil || len(jobs) != 0 {
		t.Errorf("pinned to the teacher, the decision still involves a student: %+v, %d shadow jobs", d, len(jobs))
	}
	if _, err := r.Act("d", "explode"); err == nil {
		t.Error("unknown action accepted")
	}
	r.SetOpenEnded("d", "answers are open-ended")
	r.Answered(router.Outcome{Domain: "d", Route: router.RouteTeacher, Input: "yes", Teacher: "yes"})
	if d, jobs := r.Decide("d"), e.submitted(); d.State != router.OpenEnded || d.Student != nil || d.Fallback != nil || len(jobs) != 0 {
		t.Errorf("open-ended: %+v, %d shadow jobs", d, len(jobs))
	}
	if rec := e.stored(r, "d"); rec.State != router.OpenEnded || rec.Reason != "answers are open-ended" {
		t.Errorf("stored state %s (%q)", rec.State, rec.Reason)
	}
}

// TestShadowMaxRate: a shadowing candidate is offered for scoring on at most
// about ShadowMaxRate requests per second of its domain, each domain on its
// own budget; the teacher still answers them all.
func TestShadowMaxRate(t *testing.T) {
	e := newEnv(t)
	r := e.router(router.Config{Gate: shadow.Gate{MinSamples: 50}, ShadowMaxRate: 20})
	for _, d := range []string{"a", "b"} {
		e.add(r, d, 1)
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
	for _, j := range e.submitted() {
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
	e := newEnv(t)
	r := e.router(testConfig)
	e.add(r, "d", 1)
	if _, err := r.Act("d", "promote"); err != nil {
		t.Fatal(err)
	}
	e.add(r, "d", 2)
	yes := student.Prediction{Label: "yes", Answer: "yes", Confidence: 0.99, Confident: true}
	for _, o := range []router.Outcome{
		{Route: router.RouteStudent},
		{Route: router.RouteFallback},
		{Route: router.RouteTeacher, Input: "maybe"},
		{Route: router.RouteDeferred, Input: "no no", Teacher: "no", Student: yes, Version: 1},
		{Route: router.RouteTeacher, Input: "yes yes", Teacher: "yes", Student: yes, Version: 1, Sampled: true},
	} {
		o.Domain = "d"
		r.Answered(o)
	}
	v, _ := r.View("d")
	want := map[router.Route]int64{router.RouteStudent: 1, router.RouteFallback: 1, router.RouteTeacher: 2, router.RouteDeferred: 1}
	if fmt.Sprint(v.Routes) != fmt.Sprint(want) {
		t.Errorf("routes %v, want %v", v.Routes, want)
	}
	// Only the sampled answer was asked of the teacher whatever the
	// serving version's confidence: only it counts in the tests.
	if st := v.ServingStats; st == nil || st.Samples != 2 || st.Agree != 1 || st.Uniform != 1 {
		t.Errorf("serving version's samples: %+v, want 2 with 1 agreement, 1 uniform", st)
	}
	jobs := e.submitted()
	if len(jobs) != 2 || jobs[0].Version != 2 || jobs[0].Label != "no" || jobs[0].Input != "no no" || jobs[1].Label != "yes" ||
		jobs[0].Uniform || !jobs[1].Uniform {
		t.Fatalf("shadow jobs %+v, want v2 on (no no, no), not uniform, and (yes yes, yes), uniform", jobs)
	}
	for _, j := range jobs {
		j.Sink(j.Domain, j.Version, shadow.SampleOf(yes, j.Label, j.Uniform))
	}
	if v, _ := r.View("d"); v.CandidateStats == nil || v.CandidateStats.Samples != 2 || v.CandidateStats.Agree != 1 || v.CandidateStats.Uniform != 1 {
		t.Errorf("candidate's samples: %+v, want 2 with 1 agreement, 1 uniform", v.CandidateStats)
	}
}

// TestRun: the router takes the trainer's reports from its channel (a
// version becomes the candidate, loaded from the artifact in the report;
// an open-ended domain is marked so) and stores every change; a restart
// reads them back. A demotion asks the trainer, given at construction,
// for a new version.
func TestRun(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var retrain []string
	r, err := router.New(testConfig, router.Deps{Store: e.db, Shadow: e.submit, Retrain: func(d string) {
		mu.Lock()
		defer mu.Unlock()
		retrain = append(retrain, d)
	}})
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan trainer.Report)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, reports) }()
	spam := e.version("spam", 1)
	reports <- trainer.Report{Domain: "spam", Artifact: spam}
	reports <- trainer.Report{Domain: "chat", OpenEnded: "1000 distinct answers in 1000 pairs"}
	reports <- trainer.Report{} // a no-op: nothing to take
	// Once loaded, a version's ONNX bytes are dropped: Run's frame keeps
	// the last report reachable, and with it 8 MB a version.
	if spam.ONNX != nil {
		t.Errorf("a taken report's artifact still holds %d ONNX bytes", len(spam.ONNX))
	}
	for i := 0; i < 1000 && r.Decide("spam").State != router.Serving; i++ {
		r.Observe("spam", 1, shadow.Sample{Confidence: 1, Uniform: true, Agree: true, Teacher: "yes", Student: "yes"})
	}
	if d := r.Decide("spam"); d.State != router.Serving || d.Version != 1 {
		t.Fatalf("spam after agreeing samples: %+v", d)
	}
	for i := 0; i < 500 && r.Decide("spam").State == router.Serving; i++ {
		r.Observe("spam", 1, shadow.Sample{Confidence: 1, Uniform: true, Teacher: "no", Student: "yes"})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if fmt.Sprint(retrain) != "[spam]" {
		t.Errorf("retrain asked for %v, want [spam] after the demotion", retrain)
	}
	mu.Unlock()

	r2 := e.router(testConfig)
	if d := r2.Decide("chat"); d.State != router.OpenEnded {
		t.Errorf("chat after a restart: %s, want open_ended", d.State)
	}
	if v, _ := r2.View("spam"); v.State != router.Collecting || len(v.Transitions) != 3 {
		t.Errorf("spam after a restart: %s with %d transitions, want collecting after 3", v.State, len(v.Transitions))
	}
}

// TestRecentOffload: the view's recent offload covers the last
// RecentWindow answers, beside the all-time share.
func TestRecentOffload(t *testing.T) {
	e := newEnv(t)
	r := e.router(testConfig)
	if v, _ := r.View("d"); v.RecentAnswers != 0 {
		t.Fatalf("recent answers before any: %d", v.RecentAnswers)
	}
	for range 3000 {
		r.Answered(router.Outcome{Domain: "d", Route: router.RouteTeacher})
	}
	for i := range router.RecentWindow {
		route := router.RouteStudent
		if i%4 == 0 {
			route = router.RouteDeferred
		}
		r.Answered(router.Outcome{Domain: "d", Route: route})
	}
	v, _ := r.View("d")
	if v.RecentAnswers != router.RecentWindow || v.RecentOffload != 0.75 {
		t.Errorf("recent offload %v of %d answers, want 0.75 of %d", v.RecentOffload, v.RecentAnswers, router.RecentWindow)
	}
	if want := 750.0 / 4000; v.Offload != want {
		t.Errorf("all-time offload %v, want %v", v.Offload, want)
	}
}

// failingStore refuses the first fail routing-record writes with a plain
// error, as a store whose servers are away does.
type failingStore struct {
	*storage.DB
	fail atomic.Int32
}

func (s *failingStore) PutRoutingRecord(domain string, rec []byte) error {
	if s.fail.Add(-1) >= 0 {
		return errors.New("nats: timeout")
	}
	return s.DB.PutRoutingRecord(domain, rec)
}

// TestRecordWriteRetried: a routing record the store could not write is
// written once the store takes writes again, without another change of
// its domain.
func TestRecordWriteRetried(t *testing.T) {
	e := newEnv(t)
	store := &failingStore{DB: e.db}
	store.fail.Store(2)
	r, err := router.New(testConfig, router.Deps{Store: store, Shadow: e.submit})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx, nil) }()
	defer func() { cancel(); <-done }()
	e.add(r, "spam", 1) // a transition to shadowing: one record
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, err := e.db.RoutingRecords()
		if err != nil {
			t.Fatal(err)
		}
		if b, ok := stored["spam"]; ok {
			var rec router.Record
			if err := json.Unmarshal(b, &rec); err != nil || rec.State != router.Shadowing {
				t.Fatalf("stored record %s (%v), want shadowing", b, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the record was not written within 30s (%d failures left)", store.fail.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
