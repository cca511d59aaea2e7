package shadow

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
)

// RecentSize is the number of latest samples behind Stats.Recent.
const RecentSize = 500

// maxConfusionPairs bounds the distinct (teacher, student) label pairs a
// tracker counts; disagreements on pairs first seen after that are not
// counted in Confusions.
const maxConfusionPairs = 4096

// topConfusions is how many pairs Stats.Confusions lists.
const topConfusions = 10

// Thresholds is the fixed grid of confidence thresholds τ the gate tests,
// highest first. A student answers when its calibrated confidence reaches
// the τ in use; the lower the τ, the more it answers (coverage) and, for a
// calibrated student, the less often it agrees among those answers.
var Thresholds = []float64{
	0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.92, 0.91, 0.90,
	0.88, 0.86, 0.84, 0.82, 0.80, 0.75, 0.70, 0.65, 0.60, 0.55, 0.50,
}

// Sample is one scored request.
type Sample struct {
	// Confidence is the student's calibrated probability of its label.
	Confidence float64
	// Agree: the student's label equals the teacher's.
	Agree bool
	// Uniform: the request was scored whatever the student's confidence
	// (a candidate's shadow sample, a back-tested pair, a serving
	// student's sampled answer). Only uniform samples count in the tests
	// and the per-τ statistics: a serving student's unconfident answers,
	// all of which the teacher answers, would over-represent them.
	Uniform bool
	// Teacher and Student are the two labels, for the confusion counts.
	Teacher, Student string
	// Fields, when the teacher's answer is a record, compare it field by
	// field (fields.go); uniform samples count them apart from the gate.
	Fields []FieldSample
}

// Confusion counts confident disagreements with one pair of labels.
type Confusion struct {
	Teacher, Student string
	Count            int64
}

// WindowStats describes the latest samples at the τ in use.
type WindowStats struct {
	Samples            int     // at most RecentSize
	SelectiveAgreement float64 // agreement among confident samples; 0 if none
	Coverage           float64 // share of samples that were confident
	Agreement          float64 // agreement among all samples
}

// Level is the evidence at one threshold τ of the grid.
type Level struct {
	Tau float64 `json:"tau"`
	// Confident and ConfidentAgree count the uniform samples at or above
	// τ since its test (re)started; SelectiveAgreement is their ratio and
	// Coverage their share of the uniform samples.
	Confident          int64   `json:"confident"`
	ConfidentAgree     int64   `json:"confident_agree"`
	SelectiveAgreement float64 `json:"selective_agreement"`
	Coverage           float64 `json:"coverage"`
	// LowerBound and UpperBound of the selective agreement at τ (see
	// Stats.LowerBound).
	LowerBound float64 `json:"lower_bound"`
	UpperBound float64 `json:"upper_bound"`
	// Evidence is the e-value of H0: selective agreement at τ ≤ θ; τ is
	// certified once it, and that of every τ tested before it, reached
	// 1/α.
	Evidence  float64 `json:"evidence"`
	Certified bool    `json:"certified"`
}

// Stats is a copy of a tracker's statistics.
type Stats struct {
	// All time for this student version, every sample.
	Samples, Agree int64
	// Agreement = Agree/Samples; 0 when undefined.
	Agreement float64
	// Uniform counts the uniform samples, Backtest those of them that
	// came from back-testing.
	Uniform, Backtest int64
	// Tau is the τ in use: the lowest certified one when Certified, else
	// the first the gate tests. The fields below describe the samples at
	// or above it, like the Level of Tau.
	Tau       float64
	Certified bool
	// Confident, ConfidentAgree, SelectiveAgreement, Coverage: as in Level,
	// at Tau.
	Confident, ConfidentAgree    int64
	SelectiveAgreement, Coverage float64
	LowerBound, UpperBound       float64
	// Levels are the thresholds tested, highest first.
	Levels []Level
	// Next is the next τ the gate needs certified: the first one tested
	// when none is, else the one below Tau; nil when Tau is the last.
	// NeedSamples estimates how many more confident samples at Next that
	// takes at its selective agreement so far; -1 when that agreement is
	// not above θ (more samples will not certify it as things stand).
	Next        *Level
	NeedSamples int64
	// Recent covers the last RecentSize samples, at Tau.
	Recent WindowStats
	// Confusions lists the most frequent confident disagreements, most
	// frequent first, at most 10.
	Confusions []Confusion
	// Fields are the counts per field of the uniform samples whose
	// teacher answer was a record, by path (OtherField last); nil when
	// there were none. The gate does not read them.
	Fields []FieldStats `json:"fields,omitempty"`
	// Promoted: MarkPromoted was called and no demotion followed.
	Promoted bool
	// PromotionEvidence is the e-value of H0: p ≤ θ at Tau (at Next while
	// nothing is certified). DemotionEvidence is the e-value of H0: p ≥ θ
	// at Tau since the last MarkPromoted (1 before).
	PromotionEvidence, DemotionEvidence float64
}

type confusionKey struct{ teacher, student string }

// level is one threshold's tests.
type level struct {
	tau float64
	b   bounds // the promotion test (at θ) and the display bounds
	d   drift  // the demotion test
}

// Tracker accumulates the samples of one (domain, student version) and runs
// the promotion and demotion tests. It is safe for concurrent use.
//
// Promotion: the gate tests, for each τ of Thresholds from a start chosen
// before any sample (NewTracker), H0_τ: the selective agreement of the
// answers at confidence ≥ τ is at most θ, each with a betting martingale
// on the uniform samples at or above τ. It runs them as fixed-sequence
// testing, highest τ first: τ is certified when its martingale and that of
// every τ tested before it have reached 1/α. Only a true H0 wrongly
// rejected can certify a τ whose agreement is at most θ, and the first such
// τ in the sequence must be rejected before any later one: by Ville's
// inequality that happens with probability at most α, at any time, however
// many thresholds there are and however often they are looked at. The gate
// passes at the lowest certified τ (the largest coverage proven) once it
// holds MinSamples confident samples, and while serving the τ in use keeps
// falling as lower ones are certified.
//
// Demotion: after MarkPromoted, a betting martingale for H0: p ≥ θ at each
// certified τ (evidence.go). When the one at the τ in use reaches 1/α_d,
// α_d = 1 − DemotionConfidence, that τ and every lower one lose their
// certificates and restart their tests: the tracker raises τ to the
// certified one above (Raise), or, with none, is demoted (Demote).
type Tracker struct {
	mu sync.Mutex

	gate   Gate
	reject float64 // 1/α
	dp     driftParams
	theta  int // index of the threshold in each level's bounds grid

	levels []level // from the start τ down
	use    int     // index of the τ in use; -1 while none is certified

	samples, agree, uniform, backtest int64

	recent  [RecentSize]uint16 // per sample: confidence ×1000 | agree<<15
	next    int                // where the next sample goes in recent
	recentN int

	confusions map[confusionKey]int64

	// fields count each field of the records answered (fields.go), in
	// the order first seen; fieldIx finds a path's.
	fields  []fieldCount
	fieldIx map[string]int

	promoted bool
}

// recentAgree flags an agreeing sample in Tracker.recent.
const recentAgree = 1 << 15

// StartIndex returns the index in Thresholds of the highest τ at or below
// tau: the first threshold a gate started at tau tests. A tau of 0 or
// above the grid starts at the top.
func StartIndex(tau float64) int {
	if tau <= 0 {
		return 0
	}
	for i, t := range Thresholds {
		if t <= tau+1e-9 {
			return i
		}
	}
	return len(Thresholds) - 1
}

// NewTracker returns an empty tracker whose tests start at Thresholds[start]
// (clamped to the grid). The start must be chosen before any sample is
// seen, from data the samples do not include. Zero fields of g take their
// defaults; it panics if g fails Validate (configuration is validated
// before trackers are made).
func NewTracker(g Gate, start int) *Tracker {
	if err := g.Validate(); err != nil {
		panic("shadow: NewTracker: " + err.Error())
	}
	g = g.withDefaults()
	start = min(max(start, 0), len(Thresholds)-1)
	grid := boundGrid(g.Threshold)
	t := &Tracker{
		gate:       g,
		reject:     1 / (1 - g.Confidence),
		dp:         newDriftParams(g.Threshold, 1-g.DemotionConfidence),
		theta:      slices.Index(grid, g.Threshold),
		use:        -1,
		confusions: make(map[confusionKey]int64),
	}
	for _, tau := range Thresholds[start:] {
		t.levels = append(t.levels, level{tau: tau, b: newBounds(grid)})
	}
	return t
}

// Gate returns the tracker's gate, defaults filled in.
func (t *Tracker) Gate() Gate { return t.gate }

// Add records one sample and returns what it changed (see Verdict).
func (t *Tracker) Add(s Sample) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.add(s)
}

// add is Add without the lock.
func (t *Tracker) add(s Sample) Verdict {
	t.samples++
	if s.Agree {
		t.agree++
	}
	t.remember(s)
	if s.Uniform {
		t.uniform++
		if s.Confidence >= t.tau() && !s.Agree {
			t.confuse(s.Teacher, s.Student)
		}
		t.countFields(s.Fields, t.tau())
		for k := len(t.levels) - 1; k >= 0; k-- { // lowest τ first
			l := &t.levels[k]
			if s.Confidence < l.tau {
				break
			}
			// The demotion test's baseline is estimated before this
			// sample is counted: stakes depend on earlier samples only.
			p0 := (float64(l.b.s) + 1) / (float64(l.b.n) + 2)
			l.b.add(s.Agree, t.reject)
			l.d.add(s.Agree, t.promoted && k <= t.use, p0, &t.dp)
		}
	}
	return t.verdict()
}

// verdict updates the τ in use and says what changed.
func (t *Tracker) verdict() Verdict {
	if t.promoted && t.use >= 0 && t.levels[t.use].d.logE >= t.dp.logPass {
		// Serve at the lowest certified τ above whose own test has not
		// fired too; the τ left and every lower one start afresh.
		up := t.use - 1
		for up >= 0 && t.levels[up].d.logE >= t.dp.logPass {
			up--
		}
		for k := up + 1; k < len(t.levels); k++ {
			t.levels[k].b.reset()
			t.levels[k].d = drift{}
		}
		t.use = up
		if t.use < 0 {
			t.promoted = false
			return Demote
		}
		return Raise
	}
	// Certified: the longest prefix whose tests have all rejected.
	c := -1
	for k := range t.levels {
		if t.levels[k].b.lower[t.theta] < t.reject {
			break
		}
		c = k
	}
	for k := c; k > t.use; k-- {
		if t.levels[k].b.n >= int64(t.gate.MinSamples) {
			t.use = k
			break
		}
	}
	if !t.promoted && t.use >= 0 {
		return Promote
	}
	return None
}

// tau is the τ in use, or the first tested. t.mu must be held.
func (t *Tracker) tau() float64 {
	if t.use >= 0 {
		return t.levels[t.use].tau
	}
	return t.levels[0].tau
}

// Tau returns the τ in use: the lowest certified, or the first tested while
// none is.
func (t *Tracker) Tau() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tau()
}

// Promising reports whether the threshold below the one in use could be
// certified with more samples: its selective agreement so far is above θ
// and its test has not passed yet.
func (t *Tracker) Promising() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.use + 1
	if t.use < 0 || k >= len(t.levels) {
		return false
	}
	l := &t.levels[k]
	if l.b.lower[t.theta] >= t.reject || l.b.lower[t.theta] == 0 {
		return false
	}
	mu, _ := l.b.estimate()
	return mu > t.gate.Threshold
}

// Progress orders trackers by how far their promotion has come: the
// number of certified thresholds plus the share of the way the next test
// has gone to 1/α (in log wealth).
func (t *Tracker) Progress() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.use + 1
	if k >= len(t.levels) {
		return float64(k)
	}
	w := t.levels[k].b.lower[t.theta]
	return float64(k) + max(0, min(1, math.Log(max(w, 1e-300))/math.Log(t.reject)))
}

func (t *Tracker) confuse(teacher, student string) {
	k := confusionKey{teacher, student}
	if n, ok := t.confusions[k]; ok {
		t.confusions[k] = n + 1
		return
	}
	if len(t.confusions) >= maxConfusionPairs {
		return
	}
	// The labels may share memory with a request; keep copies.
	t.confusions[confusionKey{strings.Clone(teacher), strings.Clone(student)}] = 1
}

// remember puts one sample in the recent window.
func (t *Tracker) remember(s Sample) {
	v := uint16(math.Round(min(max(s.Confidence, 0), 1) * 1000))
	if s.Agree {
		v |= recentAgree
	}
	t.recent[t.next] = v
	t.next = (t.next + 1) % RecentSize
	t.recentN = min(t.recentN+1, RecentSize)
}

// MarkPromoted records that the student now serves and starts the demotion
// tests afresh: only samples added from now on count against it. It does
// nothing if the tracker is already promoted, so calling it twice does not
// throw away evidence. A tracker promoted with nothing certified (an
// operator's promotion) serves at the first τ tested.
func (t *Tracker) MarkPromoted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.promoted {
		return
	}
	t.promoted = true
	if t.use < 0 {
		t.use = 0
	}
	for k := range t.levels {
		t.levels[k].d.logE = 0
	}
}

// AddBacktest records samples scored before the version met live
// traffic (back-testing on pairs it never trained on): uniform samples
// like the live ones, counted apart in Stats.Backtest.
func (t *Tracker) AddBacktest(samples []Sample) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	v := None
	for _, s := range samples {
		s.Uniform = true
		t.backtest++
		if got := t.add(s); got != None {
			v = got
		}
	}
	return v
}

// Stats returns a copy of the statistics.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Samples:     t.samples,
		Agree:       t.agree,
		Agreement:   ratio(t.agree, t.samples),
		Uniform:     t.uniform,
		Backtest:    t.backtest,
		Tau:         t.tau(),
		Certified:   t.use >= 0,
		Promoted:    t.promoted,
		NeedSamples: -1,
	}
	certified := true
	for k := range t.levels {
		l := t.level(k)
		certified = certified && l.Evidence >= t.reject
		l.Certified = certified
		s.Levels = append(s.Levels, l)
	}
	at := max(t.use, 0)
	cur := s.Levels[at]
	s.Confident, s.ConfidentAgree = cur.Confident, cur.ConfidentAgree
	s.SelectiveAgreement, s.Coverage = cur.SelectiveAgreement, cur.Coverage
	s.LowerBound, s.UpperBound = cur.LowerBound, cur.UpperBound
	s.PromotionEvidence = cur.Evidence
	s.DemotionEvidence = math.Exp(t.levels[at].d.logE)
	if n := t.use + 1; n < len(s.Levels) {
		next := s.Levels[n]
		s.Next = &next
		s.NeedSamples = t.need(n)
		if t.use < 0 {
			s.PromotionEvidence = next.Evidence
		}
	}
	s.Recent = t.window(s.Tau)
	all := make([]Confusion, 0, len(t.confusions))
	for k, n := range t.confusions {
		all = append(all, Confusion{Teacher: k.teacher, Student: k.student, Count: n})
	}
	slices.SortFunc(all, compareConfusions)
	s.Confusions = append(make([]Confusion, 0, min(len(all), topConfusions)), all[:min(len(all), topConfusions)]...)
	s.Fields = t.fieldStats()
	return s
}

// level describes one threshold. t.mu must be held.
func (t *Tracker) level(k int) Level {
	l := &t.levels[k]
	return Level{
		Tau:                l.tau,
		Confident:          l.b.n,
		ConfidentAgree:     l.b.s,
		SelectiveAgreement: ratio(l.b.s, l.b.n),
		Coverage:           ratio(l.b.n, t.uniform),
		LowerBound:         l.b.lowerBound(),
		UpperBound:         l.b.upperBound(),
		Evidence:           l.b.lower[t.theta],
	}
}

// need estimates the confident samples level k needs before its test
// reaches 1/α: what is left of log(1/α) over the expected log growth per
// sample at the agreement seen so far; -1 when that agreement is not above
// θ. t.mu must be held.
func (t *Tracker) need(k int) int64 {
	l := &t.levels[k]
	w := l.b.lower[t.theta]
	if w >= t.reject {
		return max(0, int64(t.gate.MinSamples)-l.b.n)
	}
	mu, v := l.b.estimate()
	theta := t.gate.Threshold
	if mu <= theta || w == 0 {
		return -1
	}
	d := mu - theta
	lam := min(d/(v+d*d), betCap/theta)
	growth := mu*math.Log1p(lam*(1-theta)) + (1-mu)*math.Log1p(-lam*theta)
	if growth <= 0 {
		return -1
	}
	n := int64(math.Ceil((math.Log(t.reject) - math.Log(w)) / growth))
	return max(n, int64(t.gate.MinSamples)-l.b.n)
}

// window summarises the recent samples at tau. t.mu must be held.
func (t *Tracker) window(tau float64) WindowStats {
	cut := uint16(math.Round(tau * 1000))
	var conf, ca, agr int
	for i := range t.recentN {
		v := t.recent[(t.next-1-i+RecentSize)%RecentSize]
		agree := v&recentAgree != 0
		if agree {
			agr++
		}
		if v&^recentAgree >= cut {
			conf++
			if agree {
				ca++
			}
		}
	}
	return WindowStats{
		Samples:            t.recentN,
		SelectiveAgreement: ratio(int64(ca), int64(conf)),
		Coverage:           ratio(int64(conf), int64(t.recentN)),
		Agreement:          ratio(int64(agr), int64(t.recentN)),
	}
}

// compareConfusions orders by count, most first, then by labels.
func compareConfusions(a, b Confusion) int {
	return cmp.Or(
		cmp.Compare(b.Count, a.Count),
		strings.Compare(a.Teacher, b.Teacher),
		strings.Compare(a.Student, b.Student),
	)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Prospect estimates the coverage the version could be certified at: that
// of the lowest threshold down to which every tested one agrees above θ so
// far (on its uniform samples), 0 when the first does not.
func (t *Tracker) Prospect() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	cov := 0.0
	for k := range t.levels {
		b := &t.levels[k].b
		if b.n == 0 || float64(b.s) <= t.gate.Threshold*float64(b.n) {
			break
		}
		cov = ratio(b.n, t.uniform)
	}
	return cov
}

// Weakest returns the index of the tracker to stop scoring when there is
// room for one fewer: the one with the least Prospect (a version that could
// prove more coverage is worth its samples), then the one whose promotion
// has come least far (Progress), then the earlier (trackers are oldest
// first).
func Weakest(ts []*Tracker) int {
	w := 0
	for i := 1; i < len(ts); i++ {
		pi, pw := ts[i].Prospect(), ts[w].Prospect()
		if pi < pw || pi == pw && ts[i].Progress() < ts[w].Progress() {
			w = i
		}
	}
	return w
}
