package shadow

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// confidentSample is a uniform sample at confidence 1: every threshold
// counts it.
func confidentSample(agree bool) Sample { return Sample{Confidence: 1, Agree: agree, Uniform: true} }

func TestGateValidate(t *testing.T) {
	for _, tc := range []struct {
		gate Gate
		want string // "" for valid
	}{
		{Gate{}, ""},
		{Gate{Threshold: 1, Confidence: 0.99, MinSamples: 1}, ""},
		{Gate{Threshold: -0.1}, "gate.threshold: must be in (0,1], got -0.1"},
		{Gate{Threshold: 1.5}, "gate.threshold: must be in (0,1], got 1.5"},
		{Gate{Confidence: 1}, "gate.confidence: must be in (0.5,1), got 1"},
		{Gate{Confidence: 0.5}, "gate.confidence: must be in (0.5,1), got 0.5"},
		{Gate{Confidence: 0.51, DemotionConfidence: 0.51}, ""},
		{Gate{DemotionConfidence: 0.3}, "gate.demotion_confidence: must be in (0.5,1), got 0.3"},
		{Gate{DemotionConfidence: -0.5}, "gate.demotion_confidence: must be in (0.5,1), got -0.5"},
		{Gate{MinSamples: -1}, "gate.min_samples: must not be negative, got -1"},
	} {
		t.Run(fmt.Sprintf("%+v", tc.gate), func(t *testing.T) {
			err := tc.gate.Validate()
			if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	if g := NewTracker(Gate{}, 0).Gate(); g != DefaultGate() || g != (Gate{Threshold: 0.95, Confidence: 0.95, DemotionConfidence: 0.85, MinSamples: 200}) {
		t.Errorf("defaults: %+v", g)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewTracker with an invalid gate did not panic")
		}
	}()
	NewTracker(Gate{Threshold: 2}, 0)
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{None: "none", Promote: "promote", Demote: "demote", Raise: "raise", 7: "Verdict(7)"} {
		if got := v.String(); got != want {
			t.Errorf("%d: %q, want %q", int(v), got, want)
		}
	}
}

func TestEmptyStats(t *testing.T) {
	s := NewTracker(Gate{}, 0).Stats()
	if s.Samples != 0 || s.SelectiveAgreement != 0 || s.Coverage != 0 || s.LowerBound != 0 ||
		s.UpperBound != 1 || s.PromotionEvidence != 1 || s.DemotionEvidence != 1 || s.Tau != Thresholds[0] ||
		s.Certified || len(s.Levels) != len(Thresholds) || s.Next == nil || s.Next.Tau != Thresholds[0] ||
		s.Confusions == nil || len(s.Confusions) != 0 || s.Promoted {
		t.Errorf("empty tracker: %+v", s)
	}
	if s := NewTracker(Gate{}, StartIndex(0.9)).Stats(); s.Tau != 0.9 || len(s.Levels) != len(Thresholds)-9 {
		t.Errorf("started at 0.9: τ %v, %d levels", s.Tau, len(s.Levels))
	}
}

func TestStartIndex(t *testing.T) {
	for _, tc := range []struct {
		tau  float64
		want float64
	}{{0, 0.99}, {1, 0.99}, {0.995, 0.99}, {0.97, 0.97}, {0.9699999, 0.96}, {0.87, 0.86}, {0.3, 0.50}} {
		if got := Thresholds[StartIndex(tc.tau)]; got != tc.want {
			t.Errorf("StartIndex(%v) starts at %v, want %v", tc.tau, got, tc.want)
		}
	}
}

// Samples that were not scored whatever the confidence (a serving
// student's unsampled deferrals) count in Samples and Agreement, never in
// MinSamples, the tests or the per-τ statistics.
func TestNonUniformSamplesDoNotCount(t *testing.T) {
	mixed, pure := NewTracker(Gate{}, 0), NewTracker(Gate{}, 0)
	for i := range 199 {
		for range 50 {
			if v := mixed.Add(Sample{Confidence: 0.2, Agree: i%2 == 0, Teacher: "spam", Student: "ham"}); v != None {
				t.Fatalf("non-uniform sample: %v", v)
			}
		}
		if v := mixed.Add(confidentSample(true)); v != None {
			t.Fatalf("confident sample %d: %v before MinSamples", i+1, v)
		}
		pure.Add(confidentSample(true))
	}
	m, p := mixed.Stats(), pure.Stats()
	if m.Samples != 199*51 || m.Uniform != 199 || m.Confident != 199 || m.ConfidentAgree != 199 || m.Agree != 199+100*50 {
		t.Errorf("counts: %+v", m)
	}
	if m.Coverage != 1 || m.SelectiveAgreement != 1 {
		t.Errorf("coverage %v, selective agreement %v, want 1 and 1", m.Coverage, m.SelectiveAgreement)
	}
	if len(m.Confusions) != 0 {
		t.Errorf("non-uniform disagreements counted as confusions: %v", m.Confusions)
	}
	if m.LowerBound != p.LowerBound || m.UpperBound != p.UpperBound || m.PromotionEvidence != p.PromotionEvidence {
		t.Errorf("non-uniform samples moved the test: %+v vs %+v", m, p)
	}
	if m.PromotionEvidence < 20 || m.NeedSamples != 1 {
		t.Fatalf("199 agreeing samples: evidence %v, need %d, want the gate passed but for MinSamples", m.PromotionEvidence, m.NeedSamples)
	}
	if v := mixed.Add(confidentSample(true)); v != Promote {
		t.Fatalf("200th confident sample: %v, want promote", v)
	}

	// After promotion, non-uniform disagreements do not demote.
	mixed.MarkPromoted()
	for range 10000 {
		if v := mixed.Add(Sample{Confidence: 1, Agree: false}); v != None {
			t.Fatalf("non-uniform disagreement after promotion: %v", v)
		}
	}
	if s := mixed.Stats(); s.DemotionEvidence != 1 || !s.Promoted {
		t.Errorf("after non-uniform disagreements: evidence %v, promoted %v", s.DemotionEvidence, s.Promoted)
	}
}

// The lifecycle the router sees: Promote until MarkPromoted, Demote once,
// then a fresh promotion test.
func TestVerdicts(t *testing.T) {
	tr := NewTracker(Gate{MinSamples: 10}, 0)
	n := 0
	for tr.Add(confidentSample(true)) != Promote {
		if n++; n > 1000 {
			t.Fatal("never promoted")
		}
	}
	if v := tr.Add(confidentSample(true)); v != Promote {
		t.Errorf("Promote is not repeated before MarkPromoted: %v", v)
	}
	tr.MarkPromoted()
	if v := tr.Add(confidentSample(true)); v != None {
		t.Errorf("after MarkPromoted: %v", v)
	}
	for range 3 {
		tr.Add(confidentSample(false))
	}
	before := tr.Stats().DemotionEvidence
	tr.MarkPromoted() // already promoted: keeps the evidence
	if after := tr.Stats().DemotionEvidence; after != before || before == 1 {
		t.Errorf("second MarkPromoted: evidence %v → %v", before, after)
	}

	// Every sample at confidence 1: every τ sees the same ones, so the
	// drift at the τ in use leaves no certified τ above it.
	var v Verdict
	for n = 0; v != Demote; n++ {
		if n > 1000 {
			t.Fatal("all-disagree samples never demoted")
		}
		if v = tr.Add(confidentSample(false)); v == Raise {
			continue
		}
	}
	s := tr.Stats()
	if s.Promoted || s.Certified || s.LowerBound != 0 || s.PromotionEvidence != 1 {
		t.Errorf("after Demote: %+v", s)
	}
	if v := tr.Add(confidentSample(false)); v != None {
		t.Errorf("Demote repeated: %v", v)
	}
	// Re-promotion needs MinSamples new confident samples; the all-time
	// counts are kept.
	for i := 1; ; i++ {
		v := tr.Add(confidentSample(true))
		if v == Promote {
			if i < 10 {
				t.Errorf("promoted again after %d samples, want at least MinSamples", i)
			}
			break
		}
		if i > 1000 {
			t.Fatal("never promoted again")
		}
	}
	if s := tr.Stats(); s.Samples < 100 || s.Uniform != s.Samples {
		t.Errorf("all-time counts reset: %+v", s)
	}
}

// calibrated returns a sample of a calibrated student: confidence uniform
// in [0.5, 1), agreeing with that probability, so the selective agreement at
// τ is (1 + τ)/2, at least 0.95 exactly for τ ≥ 0.90.
func calibrated(r *rand.Rand) Sample {
	c := 0.5 + r.Float64()/2
	return Sample{Confidence: c, Agree: r.Float64() < c, Uniform: true}
}

// The gate certifies thresholds from the highest down, serves at the
// lowest certified, lowers τ while serving as evidence grows, and never
// goes below what is true.
func TestLowestCertifiedThreshold(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	tr := NewTracker(Gate{}, 0)
	var promotedAt float64
	for i := 0; i < 200_000; i++ {
		switch tr.Add(calibrated(r)) {
		case Promote:
			promotedAt = tr.Tau()
			tr.MarkPromoted()
		case Demote, Raise:
			t.Fatalf("sample %d: a steady student lost its τ", i)
		}
	}
	s := tr.Stats()
	t.Logf("promoted at τ %v; after 200,000 samples τ %v, coverage %.3f, selective agreement %.4f [%v, %v]",
		promotedAt, s.Tau, s.Coverage, s.SelectiveAgreement, s.LowerBound, s.UpperBound)
	if promotedAt == 0 || s.Tau >= promotedAt {
		t.Errorf("promoted at τ %v, serving at %v: τ did not fall with the evidence", promotedAt, s.Tau)
	}
	if s.Tau < 0.9 {
		t.Errorf("serving at τ %v, where the selective agreement is %v < 0.95", s.Tau, (1+s.Tau)/2)
	}
	if s.Tau > 0.93 {
		t.Errorf("serving at τ %v after 200,000 samples: coverage left unproven", s.Tau)
	}
	for _, l := range s.Levels {
		if l.Certified != (l.Tau >= s.Tau) {
			t.Errorf("τ %v certified %v while serving at %v", l.Tau, l.Certified, s.Tau)
		}
	}
	if s.Next == nil || s.Next.Tau >= s.Tau || s.NeedSamples != -1 && s.Next.SelectiveAgreement < 0.95 {
		t.Errorf("next τ %+v, need %d", s.Next, s.NeedSamples)
	}
}

// A drift among the answers at the τ in use raises τ to the certified one
// above, whose answers still agree; a drift everywhere then demotes.
func TestRaise(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	tr := NewTracker(Gate{MinSamples: 50}, 0)
	for i := 0; tr.Tau() > 0.91 || !tr.Stats().Promoted; i++ {
		if tr.Add(calibrated(r)) == Promote {
			tr.MarkPromoted()
		}
		if i > 500_000 {
			t.Fatalf("τ %v after %d samples", tr.Tau(), i)
		}
	}
	// Answers at confidence in [0.91, 0.95) now always disagree.
	raised := false
	for i := 0; i < 20_000 && !raised; i++ {
		s := calibrated(r)
		if s.Confidence >= 0.91 && s.Confidence < 0.95 {
			s.Agree = false
		}
		switch tr.Add(s) {
		case Raise:
			raised = true
		case Demote:
			t.Fatalf("demoted after %d samples: only the answers below 0.95 drifted", i)
		}
	}
	if !raised || tr.Tau() <= 0.91 || !tr.Stats().Promoted {
		t.Fatalf("raised %v, τ %v", raised, tr.Tau())
	}
	for i := 0; ; i++ {
		if v := tr.Add(Sample{Confidence: 0.5 + r.Float64()/2, Uniform: true}); v == Demote {
			break
		}
		if i > 20_000 {
			t.Fatalf("a student that always disagrees is still serving at τ %v", tr.Tau())
		}
	}
	if s := tr.Stats(); s.Promoted || s.Certified {
		t.Errorf("after demotion: %+v", s)
	}
}

// Back-tested samples count like live ones, and are told apart.
func TestBacktest(t *testing.T) {
	bt := make([]Sample, 300)
	for i := range bt {
		bt[i] = Sample{Confidence: 1, Agree: true}
	}
	tr := NewTracker(Gate{}, 0)
	if v := tr.AddBacktest(bt); v != Promote {
		t.Fatalf("300 agreeing back-tested samples: %v, want promote", v)
	}
	if s := tr.Stats(); s.Backtest != 300 || s.Uniform != 300 || s.Confident != 300 {
		t.Errorf("stats after back-testing: %+v", s)
	}
}

// NeedSamples estimates the confident samples still needed at the next τ.
func TestNeedSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 13))
	tr := NewTracker(Gate{MinSamples: 1}, 0)
	for range 100 {
		tr.Add(confidentSample(r.Float64() < 0.99))
	}
	s := tr.Stats()
	if s.Certified || s.NeedSamples <= 0 {
		t.Fatalf("after 100 samples: %+v", s)
	}
	n := 0
	for ; n < 10*int(s.NeedSamples) && tr.Add(confidentSample(r.Float64() < 0.99)) != Promote; n++ {
	}
	t.Logf("estimated %d more samples, took %d", s.NeedSamples, n)
	if n < int(s.NeedSamples)/4 || n > 4*int(s.NeedSamples) {
		t.Errorf("estimated %d more samples, took %d", s.NeedSamples, n)
	}
	bad := NewTracker(Gate{}, 0)
	for range 100 {
		bad.Add(confidentSample(r.Float64() < 0.9))
	}
	if s := bad.Stats(); s.NeedSamples != -1 {
		t.Errorf("agreement 0.9 below θ: need %d, want -1", s.NeedSamples)
	}
}

func TestThresholdOneNeverPromotes(t *testing.T) {
	tr := NewTracker(Gate{Threshold: 1}, 0)
	for range 20000 {
		if v := tr.Add(confidentSample(true)); v != None {
			t.Fatalf("θ = 1: %v", v)
		}
	}
	if s := tr.Stats(); s.LowerBound < 0.99 || s.LowerBound >= 1 {
		t.Errorf("θ = 1, all agree: lower bound %v", s.LowerBound)
	}
	tr.MarkPromoted()
	for i := range 1000 {
		if tr.Add(confidentSample(false)) == Demote {
			t.Logf("θ = 1: demoted after %d disagreements", i+1)
			return
		}
	}
	t.Error("θ = 1: 1000 disagreements did not demote")
}

// With every sample agreeing, the lower bound rises toward 1, never falls
// and never passes the empirical mean (1); the upper bound stays 1.
func TestBoundsAllAgree(t *testing.T) {
	tr := NewTracker(Gate{}, 0)
	last := 0.0
	for i := 1; i <= 5000; i++ {
		tr.Add(confidentSample(true))
		s := tr.Stats()
		if s.LowerBound < last || s.LowerBound > s.SelectiveAgreement || s.UpperBound != 1 {
			t.Fatalf("after %d samples: bounds [%v, %v], previous lower %v", i, s.LowerBound, s.UpperBound, last)
		}
		last = s.LowerBound
		switch i {
		case 100:
			if last < 0.9 {
				t.Errorf("after 100 samples: lower bound %v, want ≥ 0.9", last)
			}
		case 5000:
			if last < 0.99 {
				t.Errorf("after 5000 samples: lower bound %v, want ≥ 0.99", last)
			}
		}
	}
}

// The bounds hold at every time at once: each misses the true agreement in
// at most α of streams (up to simulation noise), so [LowerBound,
// UpperBound] covers it in at least 1 − 2α. Each one is sharp: the lower
// one, betting on, misses in close to α of streams, as Ville's inequality
// allows.
func TestBoundsCoverage(t *testing.T) {
	t.Parallel()
	n := 1000
	if simUnderRace {
		n = 100
	}
	const samples = 1000
	for _, p := range []float64{0.6, 0.9, 0.95, 0.98} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			r := rand.New(rand.NewPCG(5, uint64(p*1000)))
			lowMiss, upMiss, miss := 0, 0, 0
			var width float64
			for range n {
				tr := NewTracker(Gate{}, 0)
				b := &tr.levels[0].b
				lm, um := false, false
				for range samples {
					tr.add(confidentSample(r.Float64() < p))
					// Reading the state directly: Stats would
					// allocate on every sample.
					lm = lm || b.lowerBound() >= p
					um = um || b.upperBound() <= p
				}
				if lm {
					lowMiss++
				}
				if um {
					upMiss++
				}
				if lm || um {
					miss++
				}
				width += b.upperBound() - b.lowerBound()
			}
			width /= float64(n)
			t.Logf("p = %v: lower bound ≥ p in %d, upper bound ≤ p in %d, either in %d of %d streams; mean width after %d samples %.3f",
				p, lowMiss, upMiss, miss, n, samples, width)
			// α plus three standard errors of a binomial proportion.
			tolerance := int(float64(n) * (0.05 + 3*math.Sqrt(0.05*0.95/float64(n))))
			if lowMiss > tolerance || upMiss > tolerance {
				t.Errorf("one-sided misses %d and %d of %d, want at most %d", lowMiss, upMiss, n, tolerance)
			}
			if cover := n - miss; cover < n-2*tolerance {
				t.Errorf("covered in %d of %d streams", cover, n)
			}
			// The grid is coarse below 0.9: [0.5, 0.7] is as narrow as
			// it gets around 0.6.
			if p >= 0.9 && width > 0.15 || width > 0.3 {
				t.Errorf("mean width %.3f after %d samples: the bounds do not narrow", width, samples)
			}
		})
	}
}

func TestRecentWindow(t *testing.T) {
	tr := NewTracker(Gate{}, 0)
	for range 300 {
		tr.Add(Sample{Confidence: 1, Agree: false})
	}
	for i := range 500 {
		c := 0.2
		if i%2 == 0 {
			c = 0.995
		}
		tr.Add(Sample{Confidence: c, Agree: i%4 != 3})
	}
	r := tr.Stats().Recent
	want := WindowStats{Samples: 500, SelectiveAgreement: 1, Coverage: 0.5, Agreement: 0.75}
	if r != want {
		t.Errorf("recent %+v, want %+v", r, want)
	}
}

func TestConfusions(t *testing.T) {
	tr := NewTracker(Gate{}, 0)
	add := func(teacher, student string, n int) {
		for range n {
			tr.Add(Sample{Confidence: 1, Uniform: true, Teacher: teacher, Student: student})
		}
	}
	for i := range 12 {
		add("t", fmt.Sprintf("s%02d", i), i+1)
	}
	add("ham", "spam", 20)
	tr.Add(Sample{Confidence: 0.3, Uniform: true, Teacher: "ham", Student: "eggs"}) // not confident
	tr.Add(Sample{Confidence: 1, Teacher: "ham", Student: "eggs"})                  // not uniform
	tr.Add(Sample{Confidence: 1, Uniform: true, Agree: true, Teacher: "ham", Student: "ham"})
	got := tr.Stats().Confusions
	want := []Confusion{{"ham", "spam", 20}}
	for i := 11; len(want) < 10; i-- {
		want = append(want, Confusion{"t", fmt.Sprintf("s%02d", i), int64(i + 1)})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("confusions\n%v\nwant\n%v", got, want)
	}
	// Ties break by labels.
	tr = NewTracker(Gate{}, 0)
	add("b", "a", 1)
	add("a", "b", 1)
	if got := tr.Stats().Confusions; got[0].Teacher != "a" {
		t.Errorf("tie order: %v", got)
	}
}

func TestConfusionPairsBounded(t *testing.T) {
	tr := NewTracker(Gate{}, 0)
	for i := range maxConfusionPairs + 10 {
		tr.Add(Sample{Confidence: 1, Uniform: true, Teacher: "t", Student: fmt.Sprint(i)})
	}
	tr.Add(Sample{Confidence: 1, Uniform: true, Teacher: "t", Student: "0"})
	if n := len(tr.confusions); n != maxConfusionPairs {
		t.Errorf("%d pairs tracked", n)
	}
	if c := tr.Stats().Confusions[0]; c != (Confusion{"t", "0", 2}) {
		t.Errorf("top confusion %v", c)
	}
}

// scriptedSample is a reproducible mix of samples: agreement 0.97,
// confidence spread over the grid, a tenth not uniform, a few labels.
func scriptedSample(r *rand.Rand) Sample {
	labels := []string{"billing", "bug", "other"}
	s := Sample{Confidence: 0.4 + 0.6*r.Float64(), Uniform: r.Float64() < 0.9, Agree: r.Float64() < 0.97}
	s.Teacher = labels[r.IntN(3)]
	s.Student = s.Teacher
	if !s.Agree {
		s.Student = labels[(r.IntN(2)+1+slices.Index(labels, s.Teacher))%3]
	}
	return s
}

// A restored tracker continues exactly as the original would have.
func TestSnapshotRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		promote bool
	}{
		{"empty", 0, false},
		{"shadowing", 150, false},
		{"long", 3000, false},
		{"promoted", 3000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(6, uint64(tc.n)))
			a := NewTracker(Gate{}, 0)
			for range tc.n {
				a.Add(scriptedSample(r))
			}
			if tc.promote {
				a.MarkPromoted()
				for range 300 {
					a.Add(scriptedSample(r))
				}
			}
			snap, err := a.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			b, err := RestoreTracker(Gate{}, snap)
			if err != nil {
				t.Fatal(err)
			}
			if sa, sb := a.Stats(), b.Stats(); !reflect.DeepEqual(sa, sb) {
				t.Fatalf("restored stats differ:\n%+v\n%+v", sa, sb)
			}
			demoted := false
			for i := range 2000 {
				s := scriptedSample(r)
				if i > 1000 {
					s.Agree = false // drift, so that a promoted one is demoted
				}
				va, vb := a.Add(s), b.Add(s)
				if va != vb {
					t.Fatalf("sample %d: verdicts %v and %v", i, va, vb)
				}
				if va == Promote {
					a.MarkPromoted()
					b.MarkPromoted()
				}
				demoted = demoted || va == Demote
				if i%97 == 0 {
					if sa, sb := a.Stats(), b.Stats(); !reflect.DeepEqual(sa, sb) {
						t.Fatalf("sample %d: stats differ:\n%+v\n%+v", i, sa, sb)
					}
				}
			}
			if tc.promote && !demoted {
				t.Error("the promoted tracker was not demoted by the drift")
			}
			again, err := b.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if snapA, _ := a.Snapshot(); string(snapA) != string(again) {
				t.Error("snapshots of the two trackers differ")
			}
		})
	}
}

func TestRestoreUnderAnotherGate(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	a := NewTracker(Gate{}, 0)
	for range 2000 {
		a.Add(confidentSample(r.Float64() < 0.98))
	}
	a.MarkPromoted()
	for range 3 {
		a.Add(confidentSample(false))
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sa := a.Stats()

	// A threshold off the grid: its martingale starts afresh, and so
	// does the demotion test; counts and the rest of the grid are kept.
	b, err := RestoreTracker(Gate{Threshold: 0.9525}, snap)
	if err != nil {
		t.Fatal(err)
	}
	sb := b.Stats()
	if sb.Samples != sa.Samples || sb.ConfidentAgree != sa.ConfidentAgree || !sb.Promoted {
		t.Errorf("counts not kept: %+v", sb)
	}
	if sb.PromotionEvidence != 1 || sb.DemotionEvidence != 1 {
		t.Errorf("tests at the new threshold: promotion %v, demotion %v, want 1 and 1",
			sb.PromotionEvidence, sb.DemotionEvidence)
	}
	// The fresh martingale at 0.9525 holds the lower bound at the grid
	// value below it.
	if sb.LowerBound != 0.95 || sb.UpperBound != sa.UpperBound {
		t.Errorf("bounds [%v, %v], want [0.95, %v]", sb.LowerBound, sb.UpperBound, sa.UpperBound)
	}

	// Another confidence keeps everything, judged at the new level.
	c, err := RestoreTracker(Gate{Confidence: 0.999}, snap)
	if err != nil {
		t.Fatal(err)
	}
	sc := c.Stats()
	if sc.DemotionEvidence != sa.DemotionEvidence || sc.LowerBound > sa.LowerBound {
		t.Errorf("confidence 0.999: %+v", sc)
	}
}

func TestRestoreInvalid(t *testing.T) {
	good, err := NewTracker(Gate{}, 0).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("snapshot lacks %q", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	for _, tc := range []struct{ name, json string }{
		{"not json", "{"},
		{"empty", ""},
		{"version 2 (one τ)", edit(`"version":3`, `"version":2`)},
		{"negative", edit(`"samples":0`, `"samples":-1`)},
		{"nesting", edit(`"uniform":0`, `"uniform":5`)},
		{"test counts", edit(`"n":0`, `"n":3`)},
		{"grid order", edit(`"grid":[0.5,0.6`, `"grid":[0.6,0.5`)},
		{"grid length", edit(`"grid":[0.5,`, `"grid":[`)},
		{"wealth", edit(`"lower":[1,`, `"lower":[-1,`)},
		{"change", edit(`"change":0`, `"change":-1`)},
		{"recent", edit(`"recent":[]`, `"recent":[1001]`)},
		{"in use", edit(`"use":-1`, `"use":99`)},
		{"thresholds", edit(`"tau":0.99`, `"tau":0.42`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RestoreTracker(Gate{}, []byte(tc.json))
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Errorf("err = %v, want ErrInvalidSnapshot", err)
			}
		})
	}
	if _, err := RestoreTracker(Gate{Confidence: 2}, good); err == nil || errors.Is(err, ErrInvalidSnapshot) {
		t.Errorf("invalid gate: %v", err)
	}
}

func FuzzRestoreTracker(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 9))
	tr := NewTracker(Gate{}, 0)
	for range 500 {
		tr.Add(scriptedSample(r))
	}
	snap, err := tr.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	f.Add([]byte(`{"version":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := RestoreTracker(Gate{}, b)
		if err != nil {
			return
		}
		tr.Add(Sample{Confidence: 1, Uniform: true, Agree: false, Teacher: "a", Student: "b"})
		tr.Stats()
		if _, err := tr.Snapshot(); err != nil {
			t.Errorf("restored tracker: %v", err)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	tr := NewTracker(Gate{MinSamples: 10}, 0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(10, uint64(w)))
			for range 500 {
				if tr.Add(scriptedSample(r)) == Promote {
					tr.MarkPromoted()
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			tr.Stats()
			if _, err := tr.Snapshot(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if s := tr.Stats(); s.Samples != 2000 {
		t.Errorf("%d samples, want 2000", s.Samples)
	}
}

// Weakest drops the candidate that could prove the least coverage: an
// old version certain only of its few most confident answers gives way to
// one that agrees above θ much further down.
func TestWeakest(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 16))
	narrow, broad := NewTracker(Gate{}, 0), NewTracker(Gate{}, 0)
	for range 3000 {
		c := 0.5 + r.Float64()/2
		// narrow agrees above θ only at 0.99 and up; broad is calibrated.
		narrow.Add(Sample{Confidence: c, Agree: c >= 0.99 || r.Float64() < 0.5, Uniform: true})
		broad.Add(calibrated(r))
	}
	if p, q := narrow.Prospect(), broad.Prospect(); p >= q || q < 0.15 {
		t.Fatalf("prospects %v (narrow) and %v (broad)", p, q)
	}
	if w := Weakest([]*Tracker{narrow, broad}); w != 0 {
		t.Errorf("Weakest = %d, want the narrow one", w)
	}
	if w := Weakest([]*Tracker{broad, narrow}); w != 1 {
		t.Errorf("Weakest = %d, want the narrow one", w)
	}
	// On a tie of prospects the one least far along goes.
	a, b := NewTracker(Gate{}, 0), NewTracker(Gate{}, 0)
	for range 50 {
		a.Add(confidentSample(true))
	}
	for range 10 {
		b.Add(confidentSample(true))
	}
	if w := Weakest([]*Tracker{a, b}); w != 1 {
		t.Errorf("Weakest = %d, want the one with fewer samples", w)
	}
}
