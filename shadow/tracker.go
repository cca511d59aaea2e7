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

// Sample is one scored request.
type Sample struct {
	// Confident: the student's calibrated probability reached its
	// threshold τ, so it would have answered.
	Confident bool
	// Agree: the student's label equals the teacher's.
	Agree bool
	// Teacher and Student are the two labels, for the confusion counts.
	Teacher, Student string
}

// Confusion counts confident disagreements with one pair of labels.
type Confusion struct {
	Teacher, Student string
	Count            int64
}

// WindowStats describes the latest samples.
type WindowStats struct {
	Samples            int     // at most RecentSize
	SelectiveAgreement float64 // agreement among confident samples; 0 if none
	Coverage           float64 // share of samples that were confident
	Agreement          float64 // agreement among all samples
}

// Stats is a copy of a tracker's statistics.
type Stats struct {
	// All time for this student version.
	Samples, Confident, ConfidentAgree, Agree int64
	// SelectiveAgreement = ConfidentAgree/Confident, Coverage =
	// Confident/Samples, Agreement = Agree/Samples; 0 when undefined.
	SelectiveAgreement, Coverage, Agreement float64
	// LowerBound and UpperBound of selective agreement: a confidence
	// sequence, valid at any time, each bound one-sided at
	// Gate.Confidence (so both hold together with probability at least
	// 1 − 2α). They cover the samples since the promotion test last
	// (re)started: creation, or the last demotion, and assume the
	// agreement does not change meanwhile; after a drift they may cross.
	LowerBound, UpperBound float64
	// Recent covers the last RecentSize samples.
	Recent WindowStats
	// Confusions lists the most frequent confident disagreements, most
	// frequent first, at most 10.
	Confusions []Confusion
	// Promoted: MarkPromoted was called and no demotion followed.
	Promoted bool
	// PromotionEvidence is the e-value of H0: p ≤ θ (it promotes at
	// 1/α = 1/(1−Confidence), and stays there once it has). DemotionEvidence
	// is the e-value of H0: p ≥ θ since the last MarkPromoted (1 before;
	// it demotes at 1/(1−DemotionConfidence) and keeps its last value after
	// a demotion).
	PromotionEvidence, DemotionEvidence float64
}

type confusionKey struct{ teacher, student string }

// Tracker accumulates the samples of one (domain, student version) and runs
// the promotion and demotion tests. It is safe for concurrent use.
//
// Promotion: the gate passes when Stats.LowerBound ≥ θ — the betting
// martingale for H0: p ≤ θ, and every one below θ on the grid, has reached
// 1/α — and MinSamples confident samples have been seen since the test
// started. Demotion: after MarkPromoted, a betting martingale for
// H0: p ≥ θ reaches 1/α_d, α_d = 1 − DemotionConfidence. Both are test
// supermartingales under their null hypotheses, so by Ville's inequality
// each wrongly fires with probability at most its α however long and
// however often it is watched; evidence.go
// explains them and their stakes. Unconfident samples count in Samples,
// Coverage and Agreement, never in the tests.
type Tracker struct {
	mu sync.Mutex

	gate   Gate
	reject float64 // 1/α
	dp     driftParams
	theta  int // index of the threshold in b.grid

	samples, confident, confidentAgree, agree int64

	recent                                   [RecentSize]uint8 // flagConfident|flagAgree per sample
	next                                     int               // where the next sample goes in recent
	recentN, recentConf, recentCA, recentAgr int

	confusions map[confusionKey]int64

	promoted bool
	b        bounds
	d        drift
}

const (
	flagConfident = 1 << iota
	flagAgree
)

// NewTracker returns an empty tracker. Zero fields of g take their
// defaults; it panics if g fails Validate (configuration is validated
// before trackers are made).
func NewTracker(g Gate) *Tracker {
	if err := g.Validate(); err != nil {
		panic("shadow: NewTracker: " + err.Error())
	}
	g = g.withDefaults()
	t := &Tracker{
		gate:       g,
		reject:     1 / (1 - g.Confidence),
		dp:         newDriftParams(g.Threshold, 1-g.DemotionConfidence),
		confusions: make(map[confusionKey]int64),
		b:          newBounds(g.Threshold),
	}
	t.theta = slices.Index(t.b.grid, g.Threshold)
	return t
}

// Gate returns the tracker's gate, defaults filled in.
func (t *Tracker) Gate() Gate { return t.gate }

// Add records one sample and returns what it changed: Promote while the
// gate has passed and MarkPromoted has not been called, Demote once when
// the promoted student is shown to agree less than the threshold (the
// tracker is then no longer promoted and its promotion test restarts on
// the samples that follow), None otherwise.
func (t *Tracker) Add(s Sample) Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.add(s)
}

// add is Add without the lock.
func (t *Tracker) add(s Sample) Verdict {
	t.samples++
	var f uint8
	if s.Agree {
		t.agree++
		f |= flagAgree
	}
	if s.Confident {
		f |= flagConfident
		// The baseline of the demotion CUSUM is estimated before this
		// sample is counted: stakes must depend on earlier samples only.
		p0 := (float64(t.confidentAgree) + 1) / (float64(t.confident) + 2)
		t.confident++
		if s.Agree {
			t.confidentAgree++
		} else {
			t.confuse(s.Teacher, s.Student)
		}
		t.b.add(s.Agree, t.reject)
		t.d.add(s.Agree, t.promoted, p0, &t.dp)
	}
	t.remember(f)

	switch {
	case t.promoted && t.d.logE >= t.dp.logPass:
		t.promoted = false
		t.b.reset()
		return Demote
	case !t.promoted && t.passed():
		return Promote
	}
	return None
}

// passed reports whether the promotion gate has passed.
func (t *Tracker) passed() bool {
	return t.b.lo > t.theta && t.b.n >= int64(t.gate.MinSamples)
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

// remember puts one sample's flags in the recent window.
func (t *Tracker) remember(f uint8) {
	if t.recentN == RecentSize {
		t.count(t.recent[t.next], -1)
	} else {
		t.recentN++
	}
	t.recent[t.next] = f
	t.count(f, 1)
	t.next = (t.next + 1) % RecentSize
}

func (t *Tracker) count(f uint8, d int) {
	if f&flagConfident != 0 {
		t.recentConf += d
		if f&flagAgree != 0 {
			t.recentCA += d
		}
	}
	if f&flagAgree != 0 {
		t.recentAgr += d
	}
}

// MarkPromoted records that the student now serves and starts the demotion
// test afresh: only samples added from now on count against it. It does
// nothing if the tracker is already promoted, so calling it twice does not
// throw away evidence.
func (t *Tracker) MarkPromoted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.promoted {
		return
	}
	t.promoted = true
	t.d.logE = 0
}

// Stats returns a copy of the statistics.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Samples:            t.samples,
		Confident:          t.confident,
		ConfidentAgree:     t.confidentAgree,
		Agree:              t.agree,
		SelectiveAgreement: ratio(t.confidentAgree, t.confident),
		Coverage:           ratio(t.confident, t.samples),
		Agreement:          ratio(t.agree, t.samples),
		LowerBound:         t.b.lowerBound(),
		UpperBound:         t.b.upperBound(),
		Recent: WindowStats{
			Samples:            t.recentN,
			SelectiveAgreement: ratio(int64(t.recentCA), int64(t.recentConf)),
			Coverage:           ratio(int64(t.recentConf), int64(t.recentN)),
			Agreement:          ratio(int64(t.recentAgr), int64(t.recentN)),
		},
		Promoted:          t.promoted,
		PromotionEvidence: t.b.lower[t.theta],
		DemotionEvidence:  math.Exp(t.d.logE),
	}
	s.Confusions = make([]Confusion, 0, min(len(t.confusions), topConfusions))
	all := make([]Confusion, 0, len(t.confusions))
	for k, n := range t.confusions {
		all = append(all, Confusion{Teacher: k.teacher, Student: k.student, Count: n})
	}
	slices.SortFunc(all, compareConfusions)
	s.Confusions = append(s.Confusions, all[:min(len(all), topConfusions)]...)
	return s
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
