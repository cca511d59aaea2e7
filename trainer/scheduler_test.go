package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// TestSchedulerReports runs the scheduler on a real pair log: a closed
// task's run stores a version and reports it with the artifact in hand; an
// open-ended one reports why. Neither writes a routing record.
func TestSchedulerReports(t *testing.T) {
	db, quiet, opts := closedTask(t, func(db *storage.DB, i int) {
		db.Log(storage.Pair{Domain: "open", Input: fmt.Sprint("text ", i), Answer: fmt.Sprint("A", i), Label: fmt.Sprint("a", i)})
	})
	s := NewScheduler(SchedulerConfig{MinPairs: 100, Interval: 10 * time.Millisecond, Options: opts}, SchedulerDeps{Store: db, Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	got := map[string]Report{}
	for len(got) < 2 {
		select {
		case r := <-s.Reports():
			got[r.Domain] = r
		case <-time.After(2 * time.Minute):
			t.Fatalf("reports after 2 minutes: %+v", got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if r := got["closed"]; r.Artifact == nil || r.Artifact.Version != 1 || r.Artifact.Domain != "closed" || r.OpenEnded != "" {
		t.Errorf("closed task's report: %+v, want v1 with its artifact", r)
	} else if vs, err := db.StudentVersions("closed"); err != nil || len(vs) != 1 || vs[0].Version != 1 {
		t.Errorf("stored versions %+v (%v), want v1", vs, err)
	}
	if r := got["open"]; r.Artifact != nil || r.OpenEnded == "" {
		t.Errorf("open-ended task's report: %+v, want a reason and no artifact", r)
	}
	if recs, err := db.RoutingRecords(); err != nil || len(recs) != 0 {
		t.Errorf("routing records after training: %q (%v), want none: the router writes them", recs, err)
	}
}

// The trainer cannot write a domain's routing state: nothing in what it
// is given of storage can.
func TestTrainerCannotWriteRoutingState(t *testing.T) {
	store := reflect.TypeFor[Store]()
	router := reflect.TypeFor[storage.RoutingRecords]()
	for i := range router.NumMethod() {
		m := router.Method(i).Name
		if _, ok := store.MethodByName(m); ok {
			t.Errorf("trainer.Store has %s: the trainer could write routing records", m)
		}
	}
	for i := range store.NumMethod() {
		if m := store.Method(i).Name; strings.Contains(m, "State") || strings.Contains(m, "Rout") {
			t.Errorf("trainer.Store has %s: routing state is the router's alone", m)
		}
	}
}

// TestDueDoublingSkipsCooldown: within the cooldown a domain is retrained
// only once its pairs have doubled since its last run, and then whatever
// RetrainEvery says.
func TestDueDoublingSkipsCooldown(t *testing.T) {
	db, quiet := testStore(t)
	s := NewScheduler(SchedulerConfig{MinPairs: 200, RetrainEvery: 500, Cooldown: time.Hour}, SchedulerDeps{Store: db, Logger: quiet})
	log := func(n int) {
		for i := range n {
			db.Log(storage.Pair{Domain: "d", Input: fmt.Sprint(i), Answer: "a", Label: "a"})
		}
		if err := db.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ranAt := func(logged int) {
		if err := db.SetDomainSetting("d", settingLoggedAtRun, fmt.Sprint(logged)); err != nil {
			t.Fatal(err)
		}
		s.lastRun["d"] = time.Now()
	}
	log(300)
	if got := s.due(); fmt.Sprint(got) != "[d]" {
		t.Fatalf("300 pairs, never trained: due %v", got)
	}
	ranAt(300)
	log(299)
	if got := s.due(); len(got) != 0 {
		t.Errorf("599 pairs, trained at 300, cooling: due %v", got)
	}
	log(1)
	if got := s.due(); fmt.Sprint(got) != "[d]" {
		t.Errorf("600 pairs, trained at 300: doubled, due %v", got)
	}
	ranAt(600)
	log(500)
	if got := s.due(); len(got) != 0 {
		t.Errorf("1,100 pairs, trained at 600, cooling: due %v", got)
	}
	s.lastRun["d"] = time.Now().Add(-2 * time.Hour)
	if got := s.due(); fmt.Sprint(got) != "[d]" {
		t.Errorf("1,100 pairs, trained at 600, cooled down: due %v", got)
	}
}

// TestDueNoDoublingPastTheCap: past MaxTrainPairs a doubling no longer
// grows the training data, and the cooldown holds.
func TestDueNoDoublingPastTheCap(t *testing.T) {
	db, quiet := testStore(t)
	s := NewScheduler(SchedulerConfig{MinPairs: 200, RetrainEvery: 1 << 30, MaxTrainPairs: 300, Cooldown: time.Hour},
		SchedulerDeps{Store: db, Logger: quiet})
	for i := range 700 {
		db.Log(storage.Pair{Domain: "d", Input: fmt.Sprint(i), Answer: "a", Label: "a"})
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.SetDomainSetting("d", settingLoggedAtRun, "200"); err != nil {
		t.Fatal(err)
	}
	s.lastRun["d"] = time.Now()
	if got := s.due(); len(got) != 0 {
		t.Errorf("700 pairs, trained at 200, cap 300: due %v", got)
	}
}

// TestHoldOutUniform: back-testing takes the newest pairs that are a
// uniform sample of the traffic, never a serving student's deferrals.
func TestHoldOutUniform(t *testing.T) {
	var ex []Example
	for i := range 10 {
		ex = append(ex, Example{Text: fmt.Sprint(i), deferred: i >= 6 && i%2 == 0})
	}
	train, newest := holdOut(ex, 3)
	texts := func(es []Example) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Text)
		}
		return strings.Join(s, " ")
	}
	if got := texts(newest); got != "5 7 9" {
		t.Errorf("back-tested %q, want the newest uniform pairs 5 7 9", got)
	}
	if got := texts(train); got != "0 1 2 3 4 6 8" {
		t.Errorf("trained on %q, want the rest in order", got)
	}
}

// TestTrainGroupedPairs: pairs logged grouped by answer (every "no" after
// every "yes") leave the held-out newest pairs with a label the rest lacks;
// the domain is still closed, and trains on all its pairs.
func TestTrainGroupedPairs(t *testing.T) {
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	db, quiet := testStore(t)
	for _, label := range []string{"yes", "no"} {
		n := map[string]int{"yes": 200, "no": 40}[label]
		for i := range n {
			db.Log(yesNo("d", label, i))
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Featurizer.BucketBits, opts.Dim = 10, 8
	cfg := DefaultSchedulerConfig()
	cfg.Options = opts
	s := NewScheduler(cfg, SchedulerDeps{Store: db, Logger: quiet})
	a, bt, err := s.TrainDomain(context.Background(), "d")
	if err != nil {
		t.Fatalf("grouped pairs: %v, want a version", err)
	}
	if len(a.Labels) != 2 || len(bt) != 0 {
		t.Errorf("labels %v, %d back-tested samples; want both labels and none", a.Labels, len(bt))
	}
}

// testStore opens a real pair log in a temporary directory, closed when
// the test ends, and returns it with a logger that discards.
// yesNo is the i-th pair of a closed task whose input says its label:
// "yes yes yes 7" is yes.
func yesNo(domain, label string, i int) storage.Pair {
	return storage.Pair{Domain: domain, Input: fmt.Sprintf("%s %d", strings.Repeat(label+" ", 3), i), Answer: label, Label: label}
}

// closedTask starts ONNX Runtime and returns a store holding 300 pairs
// of the domain "closed" (yes/no, see yesNo), and with them, for each i,
// what also logs; and small training options.
func closedTask(t *testing.T, also func(db *storage.DB, i int)) (*storage.DB, *slog.Logger, Options) {
	t.Helper()
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	db, quiet := testStore(t)
	for i := range 300 {
		db.Log(yesNo("closed", []string{"yes", "no"}[i%2], i))
		if also != nil {
			also(db, i)
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Featurizer.BucketBits, opts.Dim = 10, 8
	return db, quiet, opts
}

func testStore(t *testing.T) (*storage.DB, *slog.Logger) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open(storage.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, quiet
}

// TestDueIncremental: the scan after the first looks only at domains that
// changed, yet misses none: among 2,000 idle domains, the one that reaches
// MinPairs is due, and a domain held by the cooldown is due once it ends
// without a new pair.
func TestDueIncremental(t *testing.T) {
	db, quiet := testStore(t)
	s := NewScheduler(SchedulerConfig{MinPairs: 50, RetrainEvery: 10, Cooldown: time.Hour}, SchedulerDeps{Store: db, Logger: quiet})
	logTo := func(domain string, n int) {
		for i := range n {
			if !db.Log(storage.Pair{Domain: domain, Input: fmt.Sprint(i), Answer: "a", Label: "a"}) {
				t.Fatal("pair dropped")
			}
		}
		if err := db.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2000 {
		logTo(fmt.Sprintf("idle-%04d", i), 1)
	}
	if got := s.due(); len(got) != 0 {
		t.Fatalf("2,000 domains of one pair: due %v", got)
	}
	logTo("idle-0042", 49)
	if got := s.due(); fmt.Sprint(got) != "[idle-0042]" {
		t.Fatalf("idle-0042 reached 50 pairs: due %v", got)
	}
	if got := s.due(); fmt.Sprint(got) != "[idle-0042]" {
		t.Errorf("not trained yet: due %v, want it again", got)
	}
	if err := db.SetDomainSetting("idle-0042", settingLoggedAtRun, "50"); err != nil {
		t.Fatal(err)
	}
	s.lastRun["idle-0042"] = time.Now()
	logTo("idle-0042", 70) // 120 logged: more than doubled since 50
	if got := s.due(); fmt.Sprint(got) != "[idle-0042]" {
		t.Fatalf("trained at 50, 120 logged: doubled, due %v", got)
	}
	if err := db.SetDomainSetting("idle-0042", settingLoggedAtRun, "120"); err != nil {
		t.Fatal(err)
	}
	s.lastRun["idle-0042"] = time.Now()
	logTo("idle-0042", 20)
	if got := s.due(); len(got) != 0 {
		t.Fatalf("trained at 120, 140 logged, cooling: due %v", got)
	}
	logTo("idle-0007", 1) // traffic elsewhere moves the cursor on
	if got := s.due(); len(got) != 0 {
		t.Fatalf("still cooling: due %v", got)
	}
	s.lastRun["idle-0042"] = time.Now().Add(-2 * time.Hour)
	if got := s.due(); fmt.Sprint(got) != "[idle-0042]" {
		t.Errorf("cooldown over, no new pair: due %v, want idle-0042", got)
	}
}

// TestRunPairs: a domain's first run takes at most firstRunPairs of its
// newest pairs, later ones at most twice what it had logged at the run
// before, and none more than MaxTrainPairs.
func TestRunPairs(t *testing.T) {
	s := &Scheduler{cfg: SchedulerConfig{MinPairs: 200, MaxTrainPairs: 20000}}
	for last, want := range map[int64]int{0: firstRunPairs, 300: 600, 2902: 5804, 15000: 20000} {
		if got := s.runPairs(last); got != want {
			t.Errorf("runPairs(%d) = %d, want %d", last, got, want)
		}
	}
}

// refusingStore is a store shared by replicas on which another learner
// already stored every version: PutStudent refuses them.
type refusingStore struct{ *storage.DB }

func (refusingStore) PutStudent(domain string, version int, _, _ []byte) error {
	return fmt.Errorf("storing student %s v%d: %w", domain, version, storage.ErrFenced)
}

// TestRefusedVersionIsNotReported: a run whose version the store refuses
// (another learner stored it) reports nothing, so the router registers
// no version that is not stored.
func TestRefusedVersionIsNotReported(t *testing.T) {
	db, quiet, opts := closedTask(t, nil)
	s := NewScheduler(SchedulerConfig{MinPairs: 100, Options: opts}, SchedulerDeps{Store: refusingStore{db}, Logger: quiet})
	s.run(context.Background(), "closed", "test")
	select {
	case r := <-s.Reports():
		t.Errorf("a refused version was reported: %+v", r)
	default:
	}
	if vs, err := db.StudentVersions("closed"); err != nil || len(vs) != 0 {
		t.Errorf("stored versions %+v (%v), want none", vs, err)
	}
}
