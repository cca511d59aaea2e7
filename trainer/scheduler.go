package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// Store is what the scheduler needs from storage: the pairs to learn
// from, the domains' counts and its own bookkeeping setting, and a place
// for the versions it trains. It writes no routing state: it reports what
// it produced (Reports) and the router decides.
type Store interface {
	Pairs(ctx context.Context, domain string, fn func(storage.Pair) error) error
	storage.DomainRecords
	PutStudent(domain string, version int, meta, artifact []byte) error
	StudentVersions(domain string) ([]storage.StudentVersion, error)
}

var _ Store = (*storage.DB)(nil)

// settingLoggedAtRun is the domain setting the scheduler keeps: the
// domain's logged count when its last run began.
const settingLoggedAtRun = "trainer.logged_at_last_run"

// firstRunPairs bounds a domain's first run (see runPairs).
const firstRunPairs = 500

// runPairs is how many of a domain's newest pairs a run trains on, given
// what the domain had logged at its previous run (0 before the first):
// at most MaxTrainPairs and twice that previous count, and firstRunPairs
// for the first run. A domain that waited behind another's run while its
// pairs piled up (2,900 at 1,400 req/s) gets its first version from the
// newest 500 in a few seconds instead of from all of them in 11; its next
// run, once it has doubled (due), takes all of them.
func (s *Scheduler) runPairs(last int64) int {
	if last <= 0 {
		return min(s.cfg.MaxTrainPairs, max(firstRunPairs, s.cfg.MinPairs))
	}
	return int(min(int64(s.cfg.MaxTrainPairs), 2*last))
}

// Report is what one run produced: a new stored version (Artifact), or
// the reason the domain has no closed label space (OpenEnded). A failed
// run reports nothing.
type Report struct {
	Domain string
	// Artifact is the new version, already stored; the receiver can load
	// it without reading it back.
	Artifact *student.Artifact
	// OpenEnded says why the domain's answers are not a closed set of
	// labels; "" when Artifact is set.
	OpenEnded string
	// Backtest are the version's samples on the newest pairs, which it
	// never trained on (SchedulerConfig.BacktestPairs).
	Backtest []shadow.Sample
}

// SchedulerDeps are the scheduler's collaborators.
type SchedulerDeps struct {
	Store Store
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the scheduler's metrics; nil registers none.
	Registry prometheus.Registerer
}

// SchedulerConfig configures background training. A zero or negative
// field means its DefaultSchedulerConfig value, except Cooldown and
// BacktestPairs, where zero is a setting of its own.
type SchedulerConfig struct {
	// MinPairs a domain needs before its first version. Default 200.
	MinPairs int
	// RetrainEvery is how many new pairs trigger the next version.
	// Default 500.
	RetrainEvery int
	// MaxTrainPairs caps a run's data to the newest pairs. Default 20000.
	MaxTrainPairs int
	// Interval is how often domains are checked. Default 1s.
	Interval time.Duration
	// BacktestPairs is the most of a domain's newest pairs a run holds
	// out of training, and never looks at, to score the version it trains
	// on them (back-testing); at most a fifth of its pairs. 0: none.
	// Default 2000.
	//
	// These samples count toward the gate like live ones, on the
	// assumption that the recent past looks like the present: the pairs
	// were logged from the same traffic, just before. The live shadow and
	// the drift test stay the guard if it does not.
	BacktestPairs int
	// Cooldown is the least time between two runs of a domain that were
	// not requested. Zero means none, so a zero SchedulerConfig retrains
	// as soon as pairs allow; DefaultSchedulerConfig's is 1m.
	Cooldown time.Duration
	// Options configure each run.
	Options Options
}

// DefaultSchedulerConfig is the defaults of config's trainer section.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{
		MinPairs: 200, RetrainEvery: 500, MaxTrainPairs: 20000, BacktestPairs: 2000,
		Interval: time.Second, Cooldown: time.Minute,
		Options: DefaultOptions(),
	}
}

// Scheduler trains students in the background, one run at a time, when a
// domain has enough new pairs or when asked to.
type Scheduler struct {
	store   Store
	cfg     SchedulerConfig
	log     *slog.Logger
	trigger chan string

	reports chan Report

	runs     *prometheus.CounterVec
	duration prometheus.Histogram

	mu      sync.Mutex
	running string
	lastRun map[string]time.Time

	// Owned by Run's goroutine (see due): the ChangedSince cursor, and the
	// domains to look at again on the next tick whether or not they change.
	cursor uint64
	again  map[string]storage.Domain
}

// NewScheduler builds a scheduler.
func NewScheduler(cfg SchedulerConfig, deps SchedulerDeps) *Scheduler {
	d := DefaultSchedulerConfig()
	if cfg.MinPairs <= 0 {
		cfg.MinPairs = d.MinPairs
	}
	if cfg.RetrainEvery <= 0 {
		cfg.RetrainEvery = d.RetrainEvery
	}
	if cfg.MaxTrainPairs <= 0 {
		cfg.MaxTrainPairs = d.MaxTrainPairs
	}
	if cfg.Interval <= 0 {
		cfg.Interval = d.Interval
	}
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Options.Logger = log
	s := &Scheduler{store: deps.Store, cfg: cfg, log: log, trigger: make(chan string, 64), lastRun: map[string]time.Time{}, again: map[string]storage.Domain{},
		reports: make(chan Report, 16),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "trainer", Name: "runs_total",
			Help: "Training runs, by result: trained, open_ended, failed.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "understudy", Subsystem: "trainer", Name: "run_duration_seconds",
			Help:    "Duration of training runs.",
			Buckets: []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}),
	}
	if deps.Registry != nil {
		deps.Registry.MustRegister(s.runs, s.duration)
	}
	return s
}

// Reports delivers what each run produced, in order. Run waits for room
// in it (16 reports), so its reader must keep reading while Run runs.
func (s *Scheduler) Reports() <-chan Report { return s.reports }

// ErrBusy is returned by Trigger when too many runs are already queued.
var ErrBusy = errors.New("training queue is full")

// Trigger asks for a run of domain now, whatever its pair counts.
func (s *Scheduler) Trigger(domain string) error {
	if _, err := s.store.Domain(domain); err != nil {
		return err
	}
	select {
	case s.trigger <- domain:
		return nil
	default:
		return ErrBusy
	}
}

// Running returns the domain being trained, or "".
func (s *Scheduler) Running() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

// Run checks domains every Interval and trains those due, one at a time,
// until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-s.trigger:
			s.run(ctx, d, "requested")
		case <-tick.C:
			for _, d := range s.due() {
				if ctx.Err() != nil {
					return nil
				}
				s.run(ctx, d, "due")
			}
		}
	}
}

// due lists the domains with enough new pairs for a run: MinPairs for the
// first, then RetrainEvery new ones past the Cooldown, or as soon as the
// domain has doubled since its last run (200, 400, 800, ... pairs) while
// that still grows the training data (up to MaxTrainPairs). A young domain's students get
// better fastest (a version from 400 pairs is much better than one from
// 200, one from 20,000 barely better than one from 19,500) and train in
// a second, so the cooldown holds back only the runs that gain little.
//
// The scan is incremental: the first reads every domain, later ones only
// those whose counts or settings changed since (Store.ChangedSince), plus
// the domains it kept to look at again (held only by the cooldown, or due
// and not yet trained: a failed run is retried). A domain neither changed
// nor kept cannot have become due: its pairs are what make it due, and
// retention only lowers them. With 70,000 idle domains a tick costs
// microseconds instead of a copy and sort of them all (BenchmarkDueIdle).
//
// due is called by Run's goroutine only: it owns cursor and again.
func (s *Scheduler) due() []string {
	ds, next, err := s.store.ChangedSince(s.cursor)
	if err != nil {
		s.log.Error("listing domains for training", "err", err)
		return nil
	}
	s.cursor = next
	look := s.again
	s.again = make(map[string]storage.Domain, len(look))
	for _, d := range ds {
		look[d.Name] = d // fresh counts win over kept ones
	}
	var out []string
	pairs := map[string]int64{}
	s.mu.Lock()
	for _, d := range look {
		pairs[d.Name] = d.Pairs
		last, _ := strconv.ParseInt(d.Settings[settingLoggedAtRun], 10, 64)
		cooling := time.Since(s.lastRun[d.Name]) < s.cfg.Cooldown
		switch {
		case d.Pairs < int64(s.cfg.MinPairs):
		case last == 0,
			d.Logged >= 2*last && 2*last <= int64(s.cfg.MaxTrainPairs):
			out = append(out, d.Name)
			s.again[d.Name] = d
		case d.Logged-last >= int64(s.cfg.RetrainEvery):
			if !cooling {
				out = append(out, d.Name)
			}
			s.again[d.Name] = d
		}
	}
	// Least recently trained first, so a busy domain cannot starve others;
	// then the smallest, whose runs are quickest (an open-ended domain's
	// takes no training at all); then by name.
	sort.Slice(out, func(i, j int) bool {
		a, b := s.lastRun[out[i]], s.lastRun[out[j]]
		if !a.Equal(b) {
			return a.Before(b)
		}
		if pairs[out[i]] != pairs[out[j]] {
			return pairs[out[i]] < pairs[out[j]]
		}
		return out[i] < out[j]
	})
	s.mu.Unlock()
	return out
}

func (s *Scheduler) run(ctx context.Context, domain, why string) {
	s.mu.Lock()
	s.running = domain
	s.lastRun[domain] = time.Now()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = ""
		s.mu.Unlock()
		// A run's pairs, featurized samples and graphs (100–200 MB at
		// 20,000 pairs) are garbage now. Hand their pages back to the OS
		// at once rather than over minutes of the scavenger's pacing, so
		// the gateway's RSS falls back to what serving needs: one forced
		// collection and a madvise, a few ms once per run.
		debug.FreeOSMemory()
	}()
	began := time.Now()
	a, bt, err := s.TrainDomain(ctx, domain)
	s.duration.Observe(time.Since(began).Seconds())
	var open *OpenEndedError
	switch {
	case errors.As(err, &open):
		s.runs.WithLabelValues("open_ended").Inc()
		s.log.Info("domain is open-ended: no student", "domain", domain, "reason", open.Reason)
		s.report(ctx, Report{Domain: domain, OpenEnded: open.Reason})
	case errors.Is(err, storage.ErrFenced):
		// Another learner stored this version first: this replica was
		// deposed, or lost the race to a deposed one. Nothing was stored
		// or reported; if it still leads, its next run numbers past it.
		s.runs.WithLabelValues("failed").Inc()
		s.log.Warn("not registering the trained version: another learner stored it first", "domain", domain, "err", err)
	case err != nil:
		s.runs.WithLabelValues("failed").Inc()
		if ctx.Err() == nil {
			s.log.Error("training failed", "domain", domain, "err", err)
		}
	default:
		s.runs.WithLabelValues("trained").Inc()
		m := a.Metrics
		s.log.Info("trained student", "domain", domain, "version", a.Version, "why", why, "pairs", a.Pairs,
			"labels", m.Labels, "holdout_accuracy", round(m.HoldoutAccuracy), "tau", round(a.Tau),
			"coverage_at_tau", round(m.CoverageAtTau), "selective_agreement_at_tau", round(m.SelectiveAgreementAtTau),
			"epochs", m.Epochs, "seconds", round(m.TrainSeconds), "examples_per_second", int(m.ExamplesPerSecond))
		s.report(ctx, Report{Domain: domain, Artifact: a, Backtest: bt})
	}
}

// report hands r to the reader of Reports, unless ctx ends first.
func (s *Scheduler) report(ctx context.Context, r Report) {
	select {
	case s.reports <- r:
	case <-ctx.Done():
	}
}

func round(x float64) float64 { return float64(int(x*10000+0.5)) / 10000 }

// TrainDomain runs one training of domain on its newest pairs, less those
// it holds out for back-testing, stores the version and returns it with
// its back-tested samples. For an open-ended domain it stores nothing and
// returns an *OpenEndedError (errors.Is ErrOpenEnded) with the reason.
func (s *Scheduler) TrainDomain(ctx context.Context, domain string) (*student.Artifact, []shadow.Sample, error) {
	d, err := s.store.Domain(domain)
	if err != nil {
		return nil, nil, err
	}
	s.log.Info("training student", "domain", domain, "pairs", d.Pairs)
	last, _ := strconv.ParseInt(d.Settings[settingLoggedAtRun], 10, 64)
	examples, err := s.examples(ctx, domain, s.runPairs(last))
	if err != nil {
		return nil, nil, err
	}
	if err := s.store.SetDomainSetting(domain, settingLoggedAtRun, strconv.FormatInt(max(d.Logged, 1), 10)); err != nil {
		return nil, nil, err
	}
	// Whether the domain is open-ended is a question about all its pairs;
	// a split of them may lack a label (pairs logged grouped by answer)
	// and then trains without back-testing.
	o := s.cfg.Options.withDefaults()
	if space := BuildLabelSpace(examples, o.Rule, *o.Normalizer); space.OpenEnded {
		return nil, nil, &OpenEndedError{Reason: space.Reason}
	}
	train, newest := holdOut(examples, min(s.cfg.BacktestPairs, len(examples)/5))
	a, err := Train(ctx, train, s.cfg.Options)
	if errors.Is(err, ErrOpenEnded) {
		s.log.Info("training without back-testing: the newest pairs hold labels the rest lacks", "domain", domain)
		newest = nil
		a, err = Train(ctx, examples, s.cfg.Options)
	}
	if err != nil {
		return nil, nil, err
	}
	bt, err := backtest(a, newest)
	if err != nil {
		return nil, nil, fmt.Errorf("back-testing: %w", err)
	}
	versions, err := s.store.StudentVersions(domain)
	if err != nil {
		return nil, nil, err
	}
	a.Domain, a.Version = domain, 1
	if n := len(versions); n > 0 {
		a.Version = versions[n-1].Version + 1
	}
	meta, err := json.Marshal(a)
	if err != nil {
		return nil, nil, err
	}
	blob, err := a.Marshal()
	if err != nil {
		return nil, nil, err
	}
	if err := s.store.PutStudent(domain, a.Version, meta, blob); err != nil {
		return nil, nil, err
	}
	return a, bt, nil
}

// holdOut splits the newest n uniform pairs (logged when no student was
// asked, or sampled whatever its confidence) off examples for back-testing;
// the rest, deferred pairs among them, train. A serving student's
// deferrals are its hard cases: they teach, but back-tested they would
// make every successor look worse than it is.
func holdOut(examples []Example, n int) (train, newest []Example) {
	train = make([]Example, 0, len(examples))
	for i := len(examples) - 1; i >= 0; i-- {
		if e := examples[i]; len(newest) < n && !e.deferred {
			newest = append(newest, e)
		} else {
			train = append(train, e)
		}
	}
	slices.Reverse(train)
	slices.Reverse(newest)
	return train, newest
}

// examples reads the newest MaxTrainPairs pairs of a domain, oldest first.
func (s *Scheduler) examples(ctx context.Context, domain string, limit int) ([]Example, error) {
	ring := make([]Example, 0, limit)
	next := 0
	err := s.store.Pairs(ctx, domain, func(p storage.Pair) error {
		e := Example{Text: p.Input, Label: p.Label, Answer: p.Answer, deferred: p.Deferred}
		if len(ring) < limit {
			ring = append(ring, e)
			return nil
		}
		ring[next] = e // oldest first: overwrite the oldest kept
		next = (next + 1) % len(ring)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading pairs of %s: %w", domain, err)
	}
	return append(ring[next:], ring[:next]...), nil
}

// backtest scores a trained version on held-out examples: uniform
// samples for the gate.
func backtest(a *student.Artifact, held []Example) ([]shadow.Sample, error) {
	if len(held) == 0 {
		return nil, nil
	}
	m, err := student.Load(a, 1)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	texts := make([]string, len(held))
	for i, e := range held {
		texts[i] = e.Text
	}
	out := make([]shadow.Sample, 0, len(held))
	for start := 0; start < len(texts); start += 256 {
		preds, err := m.PredictBatch(texts[start:min(start+256, len(texts))])
		if err != nil {
			return nil, err
		}
		for i, p := range preds {
			out = append(out, shadow.SampleOf(p, held[start+i].Label, true))
		}
	}
	return out, nil
}
