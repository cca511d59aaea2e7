package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
	"github.com/understudy-dev/understudy/trainer"
)

// State is a domain's routing state.
type State string

// The states; the README's "How it works" (The gate) gives their transitions.
const (
	Collecting    State = "collecting"     // no student yet: the teacher answers
	Shadowing     State = "shadowing"      // a student is scored beside the teacher
	Serving       State = "serving"        // the student answers when confident
	OpenEnded     State = "open_ended"     // no closed label space: never a student
	PinnedTeacher State = "pinned_teacher" // an operator keeps the teacher
	PinnedStudent State = "pinned_student" // an operator keeps the student
)

// Route is who answers a request.
type Route string

// Routes, as the X-Understudy-Route header and metrics name them.
const (
	RouteTeacher  Route = "teacher"
	RouteStudent  Route = "student"
	RouteDeferred Route = "deferred" // serving, but the student was not confident
	RouteFallback Route = "student-fallback"
)

// Model is what a decision hands its caller of a student version: one
// prediction at a time. *student.Model is one; the gateway's tests use
// fakes.
type Model interface {
	Predict(input string) (student.Prediction, error)
}

var _ Model = (*student.Model)(nil)

// Shadow scores a candidate version on one teacher answer off the request
// path. It must not block: it returns false when it dropped the job.
// (*shadow.Pool).Submit is one.
type Shadow func(j shadow.Job) bool

// Scores is what the router needs from the shadow statistics of one
// student version: add a sample and learn whether the gate passed or
// failed.
type Scores interface {
	Add(s shadow.Sample) shadow.Verdict
	AddBacktest(samples []shadow.Sample) shadow.Verdict
	MarkPromoted()
	Tau() float64
	Stats() shadow.Stats
	Snapshot() ([]byte, error)
}

var _ Scores = (*shadow.Tracker)(nil)

// Config configures routing. Its zero values are settings, not defaults
// (a ShadowRate of 0 scores no serving domain's answers, a ShadowMaxRate of
// 0 caps nothing), except Gate's, whose zero fields mean
// shadow.DefaultGate's; config's router section holds the defaults.
type Config struct {
	Gate shadow.Gate
	// ExploreRate replaces ShadowRate while the serving version's next
	// threshold looks provable (shadow.Tracker.Promising).
	ExploreRate float64
	// ShadowRate is the share of confident requests of a serving domain
	// still sent to the teacher and scored, so drift is caught.
	ShadowRate float64
	// FallbackToStudent answers with a promoted student when the teacher
	// is unavailable.
	FallbackToStudent bool
	// ShadowMaxRate caps the requests per second of one domain whose
	// teacher answer is scored against a candidate (shadowing) version;
	// 0 means no cap. Scoring costs a featurization and a prediction per
	// request, as much CPU as a fifth of what relaying a request to the
	// teacher costs, while the gate needs only a few hundred samples: at
	// 200 a second it has them in seconds, and at high traffic the shadow
	// no longer adds CPU in proportion to it.
	ShadowMaxRate float64
}

// Store is what the router needs of storage: the routing records, which
// it alone writes, and the artifacts of the versions they name, which it
// loads on start.
type Store interface {
	storage.RoutingRecords
	StudentArtifact(domain string, version int) ([]byte, error)
}

var _ Store = (*storage.DB)(nil)

// Replicas is what the router needs of a store that several gateway
// replicas share: the routing records every replica stores (watched), the
// bus that carries shadow samples to the learner, and whether this
// replica is the learner (it holds the storage.Lease). *jetstream.Store
// is one.
type Replicas interface {
	storage.RoutingWatch
	storage.SampleBus
	Held() bool
}

// Deps are the router's collaborators.
type Deps struct {
	// Store holds the routing records: New reads them, and Run writes each
	// domain's record on every transition and every PersistEvery samples,
	// off the request path. Nil keeps them in memory only.
	Store Store
	// Retrain asks the trainer for a new version (after a demotion); it
	// must not block.
	Retrain func(domain string)
	// Shadow scores candidate versions. Default: none are scored.
	Shadow Shadow
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
	// Domains bounds the domains the router's metrics name. Default:
	// DefaultMaxDomains domains.
	Domains *MetricDomains
	// Replicas, when set, makes this router one of several replicas'
	// (see Lead and Follow): it starts as a follower. Nil: the router is
	// the only one and always leads.
	Replicas Replicas
}

// PersistEvery is how many samples of a domain pass between two saves of
// its statistics.
const PersistEvery = 100

// Transition is one change of a domain's state.
type Transition struct {
	Time    time.Time `json:"time"`
	From    State     `json:"from"`
	To      State     `json:"to"`
	Version int       `json:"version,omitempty"`
	Reason  string    `json:"reason"`
}

// Record is a domain's routing record as stored (as JSON, in
// storage.RoutingRecords).
type Record struct {
	State State `json:"state"`
	// Serving is the version that answers in serving (0: none).
	Serving int `json:"serving,omitempty"`
	// Candidates are the versions being scored in the shadow, oldest
	// first: at most MaxCandidates.
	Candidates []int `json:"candidates,omitempty"`
	// Candidate is where releases before several candidates kept the one
	// being scored; New reads it into Candidates.
	Candidate int `json:"candidate,omitempty"`
	// Unpinned is the state an unpin returns to.
	Unpinned    State           `json:"unpinned,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Transitions []Transition    `json:"transitions,omitempty"`
	Scores      map[int][]byte  `json:"scores,omitempty"`
	Routes      map[Route]int64 `json:"routes,omitempty"`
}

// maxTransitions is how many transitions a record keeps.
const maxTransitions = 20

// MaxCandidates is how many versions of a domain are scored in the shadow
// at once. A new version joins; when there is no room, the one that could
// prove the least coverage leaves, or on a tie the one whose promotion has
// come least far (shadow.Weakest), so the evidence gathered for a version
// about to pass survives a retraining.
const MaxCandidates = 2

// Router holds every domain's routing state and decides, per request, who
// answers. It is safe for concurrent use.
type Router struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	m    *metrics

	mu      sync.RWMutex
	domains map[string]*domain
	// sink is r.Observe, made once: the shadow jobs' destination.
	sink shadow.Sink
	// saver writes the records that changed, off the request path.
	saver *saver

	// leading: this router runs the gate and writes the records (Lead);
	// else it follows the stored records and publishes its samples.
	// followMu orders applying a stored record with taking the lead.
	leading  atomic.Bool
	followMu sync.Mutex
	// deposed tells Lead that a write was fenced off (stepDown).
	deposed chan struct{}
}

// domain is the live state of one domain.
type domain struct {
	mu         sync.Mutex
	name       string
	rec        Record
	serving    *version
	candidates []*version    // oldest first
	samples    int           // since the last save
	shadowLim  *rate.Limiter // Config.ShadowMaxRate; nil without a cap
	recent     recentRoutes
}

// RecentWindow is how many of a domain's last eligible answers its recent
// offload covers.
const RecentWindow = 1000

// recentRoutes remembers, for a domain's last RecentWindow eligible
// answers, whether a student gave each (since the process started).
type recentRoutes struct {
	bits    [(RecentWindow + 63) / 64]uint64
	next, n int
}

// add records one answer.
func (w *recentRoutes) add(student bool) {
	word, bit := w.next/64, uint(w.next%64)
	if student {
		w.bits[word] |= 1 << bit
	} else {
		w.bits[word] &^= 1 << bit
	}
	w.next = (w.next + 1) % RecentWindow
	w.n = min(w.n+1, RecentWindow)
}

// offload is the share of the remembered answers a student gave, and how
// many answers that is.
func (w *recentRoutes) offload() (float64, int) {
	if w.n == 0 {
		return 0, 0
	}
	students := 0
	for _, b := range w.bits {
		students += bits.OnesCount64(b)
	}
	return float64(students) / float64(w.n), w.n
}

// version is a loaded student version with its scores.
type version struct {
	n      int
	model  *student.Model
	scores Scores
	tau    float64 // scores.Tau(), kept current by observe
	// explore: the next threshold looks provable, so more requests are
	// sampled (Config.ExploreRate); kept current by observe.
	explore bool
}

// candidate returns the candidate version v, or nil.
func (d *domain) candidate(v int) *version {
	for _, c := range d.candidates {
		if c.n == v {
			return c
		}
	}
	return nil
}

// leader is the candidate furthest along, or nil.
func (d *domain) leader() *version {
	var best *version
	bp := -1.0
	for _, c := range d.candidates {
		if p := progress(c.scores); p > bp {
			best, bp = c, p
		}
	}
	return best
}

// setCandidates records the candidates' versions.
func (d *domain) setCandidates() {
	d.rec.Candidates = d.rec.Candidates[:0]
	for _, c := range d.candidates {
		d.rec.Candidates = append(d.rec.Candidates, c.n)
	}
}

// progress is a tracker's Progress, 0 for other Scores.
func progress(s Scores) float64 {
	if t, ok := s.(*shadow.Tracker); ok {
		return t.Progress()
	}
	return 0
}

// New builds a router from the stored routing records; it loads the models
// of their serving and candidate versions. A version that fails to load is
// dropped with a logged error (the domain falls back to collecting); a
// record that cannot be read is an error.
func New(cfg Config, deps Deps) (*Router, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Domains == nil {
		deps.Domains = NewMetricDomains(DefaultMaxDomains)
	}
	r := &Router{cfg: cfg, deps: deps, log: deps.Logger, domains: map[string]*domain{}, m: newMetrics(deps.Domains),
		deposed: make(chan struct{}, 1)}
	r.sink = r.Observe
	r.leading.Store(deps.Replicas == nil)
	if deps.Store == nil {
		return r, nil
	}
	r.saver = newSaver(deps.Store, deps.Logger)
	if deps.Replicas != nil {
		r.saver.held = deps.Replicas.Held
		r.saver.fenced = r.stepDown
	}
	stored, err := deps.Store.RoutingRecords()
	if err != nil {
		return nil, err
	}
	for name, b := range stored {
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("reading the routing record of %s: %w", name, err)
		}
		if len(rec.Candidates) == 0 && rec.Candidate != 0 {
			rec.Candidates = []int{rec.Candidate}
		}
		rec.Candidate = 0
		if deps.Replicas != nil {
			// Among replicas each router counts the routes it answered
			// since it started: the admin API sums the live replicas'
			// (gateway.Cluster), which a count carried over from the
			// leader's record would add twice.
			rec.Routes = nil
		}
		d := r.newDomain(name, rec)
		if d.rec.State == "" {
			d.rec.State = Collecting
		}
		d.serving = r.restore(name, rec.Serving, rec.Scores, true)
		for _, v := range rec.Candidates {
			if c := r.restore(name, v, rec.Scores, false); c != nil {
				d.candidates = append(d.candidates, c)
			}
		}
		d.setCandidates()
		if d.rec.State == Serving && d.serving == nil {
			d.rec.State = Collecting
		}
		if d.rec.State == Shadowing && len(d.candidates) == 0 {
			d.rec.State = Collecting
		}
		r.domains[name] = d
	}
	return r, nil
}

// Run takes the trainer's reports until ctx is done (a new version
// becomes the candidate; an open-ended domain is marked so) and writes
// changed records as they change; when ctx ends it writes what is left.
func (r *Router) Run(ctx context.Context, reports <-chan trainer.Report) error {
	var wake <-chan struct{}
	if r.saver != nil {
		wake = r.saver.wake
	}
	for {
		select {
		case <-ctx.Done():
			r.Flush()
			return nil
		case <-wake:
			r.saver.flush()
		case rep := <-reports:
			switch {
			case rep.Artifact != nil:
				if err := r.AddVersion(rep.Artifact, rep.Backtest); err != nil {
					r.log.Error("adding a student version", "domain", rep.Domain, "err", err)
				}
				// The model is loaded and ONNX Runtime holds its own copy of
				// the graph. Drop the bytes (8 MB at the default size): the
				// receive's temporary in this loop's frame keeps the last
				// report reachable until the next one arrives.
				rep.Artifact.ONNX = nil
			case rep.OpenEnded != "":
				r.SetOpenEnded(rep.Domain, rep.OpenEnded)
			}
		}
	}
}

// Flush writes the records changed since the last write. Call it after
// the last request is answered, so a restart keeps what they changed.
func (r *Router) Flush() {
	if r.saver != nil {
		r.saver.flush()
	}
}

func (r *Router) newDomain(name string, rec Record) *domain {
	d := &domain{name: name, rec: rec}
	if r.cfg.ShadowMaxRate > 0 {
		d.shadowLim = rate.NewLimiter(rate.Limit(r.cfg.ShadowMaxRate), max(1, int(r.cfg.ShadowMaxRate)))
	}
	return d
}

// restore loads a stored version with its scores. A version whose scores
// cannot be restored (a release's older format) starts afresh: promoted,
// it serves at its first threshold until evidence certifies another.
func (r *Router) restore(name string, v int, scores map[int][]byte, promoted bool) *version {
	if v == 0 {
		return nil
	}
	m, err := r.load(name, v)
	if err != nil {
		r.log.Error("loading student", "domain", name, "version", v, "err", err)
		return nil
	}
	var sc Scores
	if b, ok := scores[v]; ok {
		t, err := shadow.RestoreTracker(r.cfg.Gate, b)
		if err == nil {
			sc = t
		} else {
			r.log.Warn("restarting a student version's evidence", "domain", name, "version", v, "err", err)
		}
	}
	if sc == nil {
		t := shadow.NewTracker(r.cfg.Gate, startOf(m.Artifact))
		if promoted {
			t.MarkPromoted()
		}
		sc = t
	}
	return &version{n: v, model: m, scores: sc, tau: sc.Tau()}
}

// startOf is the first threshold the gate tests for a version: the one
// its training chose (Artifact.StartTau), else its holdout τ.
func startOf(a *student.Artifact) int {
	if a.StartTau > 0 {
		return shadow.StartIndex(a.StartTau)
	}
	return shadow.StartIndex(a.Tau)
}

// load reads a stored version and makes it servable.
func (r *Router) load(name string, v int) (*student.Model, error) {
	b, err := r.deps.Store.StudentArtifact(name, v)
	if err != nil {
		return nil, err
	}
	a, err := student.UnmarshalArtifact(b)
	if err != nil {
		return nil, err
	}
	return student.Load(a, 1)
}

func (r *Router) get(name string) *domain {
	r.mu.RLock()
	d := r.domains[name]
	r.mu.RUnlock()
	if d != nil {
		return d
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d = r.domains[name]; d == nil {
		d = r.newDomain(name, Record{State: Collecting})
		r.domains[name] = d
	}
	return d
}

// Decision is what the router decided for one request.
type Decision struct {
	State State
	// Student, when set, is the model to ask first (serving or pinned
	// student); Version is its version.
	Student Model
	Version int
	// Tau is the confidence at or above which Student answers: the lowest
	// threshold the gate has certified for it.
	Tau float64
	// Pinned: the student answers whatever its confidence.
	Pinned bool
	// ShadowRate is the share of requests sent to the teacher and scored
	// whatever the student's confidence (see Sampled), so that the
	// serving version's evidence stays unbiased and drift is caught.
	ShadowRate float64
	// Fallback, when set, may answer in the teacher's place when the
	// teacher fails before answering (router.fallback_to_student): the
	// serving version of a domain whose student passed the gate.
	// FallbackVersion is its version.
	Fallback        Model
	FallbackVersion int
}

// Decide returns who should answer an eligible request of a domain.
// Ineligible requests never reach a student; callers send them to the
// teacher without asking.
func (r *Router) Decide(name string) Decision {
	d := r.get(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	dec := Decision{State: d.rec.State, ShadowRate: r.cfg.ShadowRate}
	switch d.rec.State {
	case Serving, PinnedStudent:
		if d.serving != nil {
			dec.Student, dec.Version, dec.Tau = d.serving.model, d.serving.n, d.serving.tau
			dec.Pinned = d.rec.State == PinnedStudent
			if d.serving.explore {
				dec.ShadowRate = max(dec.ShadowRate, r.cfg.ExploreRate)
			}
		}
	}
	if r.cfg.FallbackToStudent && d.serving != nil && d.rec.State != OpenEnded {
		dec.Fallback, dec.FallbackVersion = d.serving.model, d.serving.n
	}
	return dec
}

// Sampled draws whether this request goes to the teacher and is scored
// whatever the student's confidence. Draw it once per request, before
// looking at the confidence, and report it in Outcome.Sampled.
func (dec Decision) Sampled() bool { return dec.ShadowRate > 0 && rand.Float64() < dec.ShadowRate }

// Outcome is how one eligible request was answered.
type Outcome struct {
	Domain string
	// Route is who answered.
	Route Route
	// Input is the student's input: the request's non-system text.
	Input string
	// Teacher is the teacher's answer as a label; "" when the teacher
	// gave none (a student answered, or the answer had no text).
	Teacher string
	// Student is the prediction the serving version made before the
	// teacher was asked (deferred, or sampled while confident); Version
	// is that version, 0 when no prediction was made.
	Student student.Prediction
	Version int
	// Sampled is Decision.Sampled's draw: the teacher was asked whatever
	// the student's confidence, so the sample counts in the gate's tests.
	Sampled bool
}

// Answered takes the outcome of one answered eligible request: it counts
// the route and, when the teacher answered with a label, scores the
// serving version's prediction against it and offers the answer to the
// shadow to score the candidate version (at most ShadowMaxRate a second).
// It never blocks on scoring.
func (r *Router) Answered(o Outcome) {
	d := r.get(o.Domain)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.Routes == nil {
		d.rec.Routes = map[Route]int64{}
	}
	d.rec.Routes[o.Route]++
	d.recent.add(o.Route == RouteStudent || o.Route == RouteFallback)
	if o.Teacher == "" {
		return
	}
	if o.Version != 0 {
		r.observe(d, o.Version, shadow.SampleOf(o.Student, o.Teacher, o.Sampled))
	}
	if len(d.candidates) > 0 && r.deps.Shadow != nil && d.rec.State != OpenEnded && d.rec.State != PinnedTeacher &&
		(d.shadowLim == nil || d.shadowLim.Allow()) {
		// Without a serving prediction the teacher answered whatever the
		// confidence; with one, only a sampled request was.
		uniform := o.Version == 0 || o.Sampled
		for _, c := range d.candidates {
			r.deps.Shadow(shadow.Job{Domain: o.Domain, Version: c.n, Model: c.model, Input: o.Input, Label: o.Teacher, Uniform: uniform, Sink: r.sink})
		}
	}
}

// Observe scores one sample of a version against the teacher and applies
// the gate: a candidate that passes is promoted, a serving version shown
// to fall below the threshold is demoted. It is the sink of the shadow's
// jobs.
func (r *Router) Observe(name string, v int, s shadow.Sample) {
	d := r.get(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	r.observe(d, v, s)
}

// observe is Observe with d.mu held.
func (r *Router) observe(d *domain, v int, s shadow.Sample) {
	ver := d.candidate(v)
	if ver == nil && d.serving != nil && d.serving.n == v {
		ver = d.serving
	}
	if ver == nil {
		return // a version no longer tracked
	}
	if !r.leading.Load() {
		r.publish(d.name, v, s)
		return
	}
	verdict := ver.scores.Add(s)
	r.m.samples.WithLabelValues(r.m.domains.Name(d.name), outcome(s, ver.tau)).Inc()
	d.samples++
	r.apply(d, ver, verdict)
}

// apply acts on a version's verdict. d.mu must be held.
func (r *Router) apply(d *domain, ver *version, verdict shadow.Verdict) {
	old := ver.tau
	ver.tau = ver.scores.Tau()
	if t, ok := ver.scores.(*shadow.Tracker); ok {
		ver.explore = t.Promising()
	}
	v := ver.n
	switch {
	case verdict == shadow.Promote && ver != d.serving && d.rec.State != PinnedTeacher && d.rec.State != PinnedStudent && d.rec.State != OpenEnded:
		st := ver.scores.Stats()
		if d.serving != nil && d.rec.State == Serving {
			if cur := d.serving.scores.Stats(); cur.Certified && cur.Coverage >= st.Coverage {
				break // it passed, but answers no more than the serving one
			}
		}
		reason := fmt.Sprintf("v%d passed the gate at τ %.2f: selective agreement %.4f, lower bound %.4f > %.2f on %d confident samples, coverage %.3f",
			v, st.Tau, st.SelectiveAgreement, st.LowerBound, r.cfg.Gate.Threshold, st.Confident, st.Coverage)
		if st.Backtest > 0 {
			reason += fmt.Sprintf(" (%d of %d samples back-tested)", st.Backtest, st.Uniform)
		}
		ver.scores.MarkPromoted()
		if d.serving != nil {
			retire(d.serving.model)
		}
		d.serving = ver
		d.candidates = slices.DeleteFunc(d.candidates, func(c *version) bool { return c == ver })
		d.rec.Serving = v
		d.setCandidates()
		r.transition(d, Serving, v, reason)
	case verdict == shadow.Raise && ver == d.serving:
		st := ver.scores.Stats()
		r.transition(d, d.rec.State, v, fmt.Sprintf("v%d: τ raised from %.2f to %.2f: its selective agreement at %.2f was shown to fall below %.2f",
			v, old, ver.tau, old, r.cfg.Gate.Threshold)+fmt.Sprintf(" (coverage now %.3f)", st.Coverage))
	case verdict == shadow.Demote && ver == d.serving && d.rec.State == Serving:
		st := ver.scores.Stats()
		reason := fmt.Sprintf("v%d drifted: its selective agreement at τ %.2f was shown to fall below %.2f (recent %.4f)",
			v, old, r.cfg.Gate.Threshold, st.Recent.SelectiveAgreement)
		d.serving = nil
		d.rec.Serving = 0
		to := Shadowing
		if len(d.candidates) == 0 {
			to = Collecting
		}
		r.transition(d, to, v, reason)
		retire(ver.model)
		if r.deps.Retrain != nil {
			r.deps.Retrain(d.name) // must not block: the trainer queues it
		}
	default:
		if ver == d.serving && ver.tau < old {
			r.log.Info("serving more: τ lowered", "domain", d.name, "version", v, "from", old, "to", ver.tau)
		}
		if d.samples >= PersistEvery {
			r.persist(d)
		}
	}
}

// retireAfter is how long a version that stopped serving stays open: a
// request that took it from Decide (a fallback waiting on the teacher, up
// to teacher.timeout) may still predict with it.
const retireAfter = 15 * time.Minute

// retire closes a model that no longer serves once requests are done
// with it.
func retire(m *student.Model) { time.AfterFunc(retireAfter, func() { _ = m.Close() }) }

// AddVersion makes a newly trained version (its artifact, as the trainer
// has it in hand) a candidate of its domain: it is scored in the shadow,
// beside the serving version and the newest other candidate, and serves
// only through the gate. Back-tested samples (scored on pairs it never
// trained on) count as evidence at once; nil when there are none.
func (r *Router) AddVersion(a *student.Artifact, backtest []shadow.Sample) error {
	name, v := a.Domain, a.Version
	if !r.leading.Load() {
		return fmt.Errorf("adding %s v%d: %w", name, v, ErrNotLeader)
	}
	m, err := student.Load(a, 1)
	if err != nil {
		return fmt.Errorf("loading %s v%d: %w", name, v, err)
	}
	d := r.get(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.candidates) >= MaxCandidates {
		ts := make([]*shadow.Tracker, 0, len(d.candidates))
		for _, c := range d.candidates {
			t, _ := c.scores.(*shadow.Tracker)
			ts = append(ts, t)
		}
		w := 0
		if !slices.Contains(ts, nil) {
			w = shadow.Weakest(ts)
		}
		_ = d.candidates[w].model.Close() // candidates never answer requests
		d.candidates = slices.Delete(d.candidates, w, w+1)
	}
	t := shadow.NewTracker(r.cfg.Gate, startOf(a))
	ver := &version{n: v, model: m, scores: t, tau: t.Tau()}
	d.candidates = append(d.candidates, ver)
	d.setCandidates()
	reason := fmt.Sprintf("v%d trained: scoring it in the shadow of the teacher from τ %.2f", v, ver.tau)
	if len(backtest) > 0 {
		reason += fmt.Sprintf(", with %d back-tested samples", len(backtest))
	}
	switch d.rec.State {
	case Collecting, OpenEnded:
		r.transition(d, Shadowing, v, reason)
	default:
		r.transition(d, d.rec.State, v, reason+", beside the current route")
	}
	if len(backtest) > 0 {
		r.apply(d, ver, t.AddBacktest(backtest))
	}
	return nil
}

// SetOpenEnded marks a domain open-ended: no student ever serves it.
func (r *Router) SetOpenEnded(name, reason string) {
	if !r.leading.Load() {
		return // the learner's trainer reports it again
	}
	d := r.get(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec.State == OpenEnded {
		// Still open-ended: the reason's counts change, the state does not.
		d.rec.Reason = reason
		r.persist(d)
		return
	}
	if d.serving != nil {
		retire(d.serving.model)
		d.serving, d.rec.Serving = nil, 0
	}
	for _, c := range d.candidates {
		_ = c.model.Close()
	}
	d.candidates = nil
	d.setCandidates()
	d.rec.Reason = reason
	r.transition(d, OpenEnded, 0, reason)
}

// Errors of the manual actions.
var (
	ErrNoStudent = errors.New("no student version to serve")
	ErrAction    = errors.New("unknown action")
	// ErrNotLeader: another replica holds the learner lease, and with it
	// the routing state; ask its admin API.
	ErrNotLeader = errors.New("this replica does not run the gate: another replica holds the learner lease")
)

// Act applies an operator's action: promote, demote, pin-teacher,
// pin-student, unpin.
func (r *Router) Act(name, action string) (Record, error) {
	if !r.leading.Load() {
		v, _ := r.View(name)
		return Record{State: v.State, Serving: v.Serving}, fmt.Errorf("%s %s: %w", action, name, ErrNotLeader)
	}
	d := r.get(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch action {
	case "promote":
		v := d.leader()
		if v == nil {
			return d.rec, fmt.Errorf("promoting %s: %w in the shadow", name, ErrNoStudent)
		}
		v.scores.MarkPromoted()
		v.tau = v.scores.Tau()
		if d.serving != nil {
			retire(d.serving.model)
		}
		d.serving = v
		d.candidates = slices.DeleteFunc(d.candidates, func(c *version) bool { return c == v })
		d.rec.Serving = v.n
		d.setCandidates()
		r.transition(d, Serving, v.n, fmt.Sprintf("promoted by an operator, at τ %.2f", v.tau))
	case "demote":
		if d.serving == nil {
			return d.rec, fmt.Errorf("demoting %s: %w", name, ErrNoStudent)
		}
		v := d.serving
		d.serving, d.rec.Serving = nil, 0
		if len(d.candidates) == 0 { // keep scoring it
			t := shadow.NewTracker(r.cfg.Gate, startOf(v.model.Artifact))
			d.candidates = []*version{{n: v.n, model: v.model, scores: t, tau: t.Tau()}}
			d.setCandidates()
		} else {
			retire(v.model)
		}
		r.transition(d, Shadowing, v.n, "demoted by an operator")
	case "pin-teacher":
		if d.rec.State != PinnedTeacher && d.rec.State != PinnedStudent {
			d.rec.Unpinned = d.rec.State
		}
		r.transition(d, PinnedTeacher, 0, "pinned to the teacher by an operator")
	case "pin-student":
		if c := d.leader(); d.serving == nil && c != nil {
			c.scores.MarkPromoted()
			c.tau = c.scores.Tau()
			d.serving = c
			d.candidates = slices.DeleteFunc(d.candidates, func(v *version) bool { return v == c })
			d.rec.Serving = c.n
			d.setCandidates()
		}
		if d.serving == nil {
			return d.rec, fmt.Errorf("pinning %s to its student: %w", name, ErrNoStudent)
		}
		if d.rec.State != PinnedTeacher && d.rec.State != PinnedStudent {
			d.rec.Unpinned = d.rec.State
		}
		r.transition(d, PinnedStudent, d.serving.n, "pinned to the student by an operator")
	case "unpin":
		to := d.rec.Unpinned
		switch {
		case d.serving != nil && (to == Serving || to == PinnedStudent || to == ""):
			to = Serving
		case len(d.candidates) > 0:
			to = Shadowing
		case to == OpenEnded:
		default:
			to = Collecting
		}
		d.rec.Unpinned = ""
		r.transition(d, to, 0, "unpinned by an operator")
	default:
		return d.rec, fmt.Errorf("%w %q: want promote, demote, pin-teacher, pin-student or unpin", ErrAction, action)
	}
	return d.rec, nil
}

// transition records a state change (or a version change within a state)
// and persists the record. d.mu must be held.
func (r *Router) transition(d *domain, to State, v int, reason string) {
	t := Transition{Time: r.deps.Now().UTC(), From: d.rec.State, To: to, Version: v, Reason: reason}
	d.rec.State = to
	if t.From != to {
		r.m.transitions.WithLabelValues(r.m.domains.Name(d.name), string(to)).Inc()
	}
	d.rec.Transitions = append(d.rec.Transitions, t)
	if n := len(d.rec.Transitions); n > maxTransitions {
		d.rec.Transitions = d.rec.Transitions[n-maxTransitions:]
	}
	r.log.Info("domain route changed", "domain", d.name, "from", string(t.From), "to", string(to), "version", v, "reason", reason)
	r.persist(d)
}

// persist queues a domain's record with its scores for Run to write.
// d.mu must be held.
func (r *Router) persist(d *domain) {
	d.samples = 0
	if r.saver == nil {
		return
	}
	d.rec.Scores = map[int][]byte{}
	for _, v := range append([]*version{d.serving}, d.candidates...) {
		if v != nil {
			if b, err := v.scores.Snapshot(); err == nil {
				d.rec.Scores[v.n] = b
			}
		}
	}
	r.saver.save(d.name, d.rec)
}

// View is a domain's routing state for display.
type View struct {
	State   State `json:"state"`
	Serving int   `json:"serving_version,omitempty"`
	// Tau is the confidence at or above which the serving version answers.
	Tau float64 `json:"tau,omitempty"`
	// Candidate is the candidate furthest along the gate (CandidateStats
	// its statistics); Candidates lists them all, oldest first.
	Candidate   int             `json:"candidate_version,omitempty"`
	Candidates  []VersionView   `json:"candidates,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Transitions []Transition    `json:"transitions,omitempty"`
	Routes      map[Route]int64 `json:"routes,omitempty"`
	// Offload is the share of eligible answers the student gave, all
	// time; RecentOffload the share of the last RecentAnswers (at most
	// RecentWindow, since the process started).
	Offload        float64       `json:"offload"`
	RecentOffload  float64       `json:"recent_offload"`
	RecentAnswers  int           `json:"recent_answers"`
	ServingStats   *shadow.Stats `json:"serving_stats,omitempty"`
	CandidateStats *shadow.Stats `json:"candidate_stats,omitempty"`
	Threshold      float64       `json:"threshold"`
	// Waiting says, while no version serves, why the leading candidate
	// does not yet: e.g. "v3 needs ~800 more confident samples at τ 0.91".
	Waiting string `json:"waiting,omitempty"`
}

// VersionView is one candidate version for display.
type VersionView struct {
	Version int          `json:"version"`
	Stats   shadow.Stats `json:"stats"`
}

// View returns a domain's routing state, or false when the router has
// never seen it.
func (r *Router) View(name string) (View, bool) {
	r.mu.RLock()
	d := r.domains[name]
	r.mu.RUnlock()
	if d == nil {
		return View{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v := View{State: d.rec.State, Serving: d.rec.Serving, Reason: d.rec.Reason,
		Transitions: append([]Transition(nil), d.rec.Transitions...), Routes: map[Route]int64{}, Threshold: r.cfg.Gate.Threshold}
	var total int64
	for k, n := range d.rec.Routes {
		v.Routes[k] = n
		total += n
	}
	if total > 0 {
		v.Offload = float64(d.rec.Routes[RouteStudent]+d.rec.Routes[RouteFallback]) / float64(total)
	}
	v.RecentOffload, v.RecentAnswers = d.recent.offload()
	if d.serving != nil {
		st := d.serving.scores.Stats()
		v.ServingStats, v.Tau = &st, d.serving.tau
	}
	lead := d.leader()
	for _, c := range d.candidates {
		st := c.scores.Stats()
		v.Candidates = append(v.Candidates, VersionView{Version: c.n, Stats: st})
		if c == lead {
			v.Candidate, v.CandidateStats = c.n, &st
		}
	}
	if d.serving == nil && v.CandidateStats != nil {
		v.Waiting = waiting(v.Candidate, *v.CandidateStats, r.cfg.Gate.Threshold)
	}
	return v, true
}

// waiting says why a candidate does not serve yet.
func waiting(version int, st shadow.Stats, threshold float64) string {
	switch {
	case st.Certified:
		return fmt.Sprintf("v%d passed at τ %.2f: a domain pinned or open-ended is not switched", version, st.Tau)
	case st.Next == nil:
		return fmt.Sprintf("v%d: no threshold left to test", version)
	case st.NeedSamples < 0 && st.Next.Confident == 0:
		return fmt.Sprintf("v%d needs confident samples at τ %.2f", version, st.Next.Tau)
	case st.NeedSamples < 0:
		return fmt.Sprintf("v%d agrees %.4f at τ %.2f, not above %.2f: waiting for a better version",
			version, st.Next.SelectiveAgreement, st.Next.Tau, threshold)
	}
	return fmt.Sprintf("v%d needs ~%d more confident samples at τ %.2f (selective agreement %.4f so far)",
		version, st.NeedSamples, st.Next.Tau, st.Next.SelectiveAgreement)
}
