package trainer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

// closeSlices reports the first index where got and want differ by more
// than float32 rounding allows, or -1.
func closeSlices(got, want []float32, abs, rel float64) int {
	if len(got) != len(want) {
		return 0
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.Abs(g-w) > abs+rel*math.Abs(w) {
			return i
		}
	}
	return -1
}

// maxDiff returns the largest |got−want| and the largest |want|.
func maxDiff(got, want []float32) (worst, scale float64) {
	if len(got) != len(want) {
		return math.Inf(1), 0
	}
	for i := range want {
		scale = math.Max(scale, math.Abs(float64(want[i])))
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	return worst, scale
}

func compareParams(t *testing.T, what string, got, want *Params) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want []float32
	}{
		{"E", got.E, want.E}, {"W1", got.W1, want.W1}, {"B1", got.B1, want.B1},
		{"W2", got.W2, want.W2}, {"B2", got.B2, want.B2},
	} {
		if i := closeSlices(f.got, f.want, 1e-6, 1e-4); i >= 0 {
			t.Errorf("%s %s differ at %d: ORT %v, reference %v", what, f.name, i, at(f.got, i), at(f.want, i))
		}
	}
}

func at(s []float32, i int) any {
	if i < len(s) {
		return s[i]
	}
	return "missing"
}

// TestStepLR checks the learning rate a step uses: Adam's bias correction
// times the decay.
func TestStepLR(t *testing.T) {
	for _, tc := range []struct {
		decay int
		step  int
		want  float64
	}{
		{0, 1, 0.1 * math.Sqrt(1-0.99) / (1 - 0.9)},
		{0, 3, 0.1 * math.Sqrt(1-0.99*0.99*0.99) / (1 - 0.9*0.9*0.9)},
		{2, 1, 0.1 / math.Sqrt(1.5) * math.Sqrt(1-0.99) / (1 - 0.9)},
		{2, 6, 0.1 / 2 * math.Sqrt(1-math.Pow(0.99, 6)) / (1 - math.Pow(0.9, 6))},
		{150, 450, 0.1 / 2 * math.Sqrt(1-math.Pow(0.99, 450)) / (1 - math.Pow(0.9, 450))},
	} {
		a := AdamConfig{LR: 0.1, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, DecaySteps: tc.decay}
		if got := a.stepLR(tc.step); math.Abs(float64(got)-tc.want) > 1e-6*tc.want {
			t.Errorf("decay %d, step %d: lr %v, want %v", tc.decay, tc.step, got, tc.want)
		}
	}
}

// TestStepMatchesReference runs a few ORT steps and the same steps in
// plain Go, and compares loss, parameters and moments after each.
func TestStepMatchesReference(t *testing.T) {
	requireRuntime(t)
	ids, labels, weights := tinyBatch()
	batches := []struct {
		ids     [][]int64
		labels  []int32
		weights []float32
	}{
		{ids, labels, weights},             // full batch (5 of 6 rows: partial)
		{ids[:2], labels[:2], weights[:2]}, // partial batch
		{[][]int64{{2, 2, 2, 2, 2, 2}, {9}}, []int32{2, 0}, []float32{1, 1}},
		{ids, labels, weights},
	}
	adam := AdamConfig{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, DecaySteps: 2}
	for _, tc := range tinyConfigs {
		for _, threads := range []int{1, 2} { // ScatterND and ScatterElements graphs
			t.Run(fmt.Sprintf("%s/threads=%d", tc.name, threads), func(t *testing.T) {
				// tinyTargets goes by position, so the same examples'
				// tags differ from one batch to the next.
				p := NewParams(tc.cfg, 3)
				ref, refState := p.Clone(), NewAdamState(tc.cfg)
				s, err := NewStepper(tc.cfg, adam, 6, 6, p, threads)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				for i, bt := range batches {
					targets := tinyTargets(tc.cfg, bt.labels)
					loss, err := s.Step(bt.ids, targets, bt.weights)
					if err != nil {
						t.Fatalf("step %d: %v", i+1, err)
					}
					want := referenceStep(tc.cfg, adam, ref, refState, i+1, bt.ids, targets, bt.weights)
					if math.Abs(float64(loss-want)) > 1e-5*math.Max(1, math.Abs(float64(want))) {
						t.Errorf("step %d: loss %v, reference %v", i+1, loss, want)
					}
					compareParams(t, "params", p, ref)
					compareParams(t, "first moments", &s.State().M, &refState.M)
					compareParams(t, "second moments", &s.State().V, &refState.V)
				}
				if s.Steps() != len(batches) {
					t.Errorf("Steps() = %d, want %d", s.Steps(), len(batches))
				}
				if !slices.Equal(p.E[:tc.cfg.Dim], make([]float32, tc.cfg.Dim)) {
					t.Errorf("padding row changed: %v", p.E[:tc.cfg.Dim])
				}
				// Row 6 is in no batch: lazy Adam never touches it.
				if fresh := NewParams(tc.cfg, 3); !slices.Equal(p.E[6*tc.cfg.Dim:7*tc.cfg.Dim], fresh.E[6*tc.cfg.Dim:7*tc.cfg.Dim]) {
					t.Errorf("row 6 changed although it was in no batch")
				}
			})
		}
	}
}

// TestLargeStepMatchesReference compares three steps on a full-size batch,
// large enough for ONNX Runtime to split work between threads, with ids
// repeated hundreds of times: a racy scatter-add (ScatterND on two threads)
// loses updates here and fails the moment checks. The structured model has
// a softmax head and a tags head beside it.
func TestLargeStepMatchesReference(t *testing.T) {
	requireRuntime(t)
	plain := ModelConfig{Buckets: 400, Dim: 32, Hidden: 8, Classes: 4}
	heads := plain
	heads.Classes, heads.Heads = 7, []student.Head{{Path: "kind", Start: 0, End: 4}, {Path: "tags", Tags: true, Start: 4, End: 7}}
	const batch, maxTokens = 64, 256
	rng := rand.New(rand.NewPCG(5, 6))
	zipf := rand.NewZipf(rng, 1.2, 1, uint64(plain.Buckets-2))
	ids := make([][]int64, batch-5) // a partial batch
	labels := make([][]int32, len(ids))
	tagged := make([][]int32, len(ids))
	weights := make([]float32, len(ids))
	for i := range ids {
		ids[i] = make([]int64, 1+rng.IntN(maxTokens))
		for j := range ids[i] {
			ids[i][j] = int64(1 + zipf.Uint64())
		}
		labels[i], weights[i] = []int32{int32(rng.IntN(plain.Classes))}, 0.5+rng.Float32()
		tagged[i] = labels[i]
		for c := int32(4); c < 7; c++ {
			if rng.IntN(2) == 0 {
				tagged[i] = append(tagged[i], c)
			}
		}
	}
	for _, run := range []struct {
		cfg     ModelConfig
		targets [][]int32
		threads int
	}{{plain, labels, 1}, {plain, labels, 2}, {heads, tagged, 1}, {heads, tagged, 2}} {
		cfg, labels, threads := run.cfg, run.targets, run.threads
		p := NewParams(cfg, 9)
		ref, refState := p.Clone(), NewAdamState(cfg)
		s, err := NewStepper(cfg, DefaultAdam(), batch, maxTokens, p, threads)
		if err != nil {
			t.Fatal(err)
		}
		for step := 1; step <= 3; step++ {
			loss, err := s.Step(ids, labels, weights)
			if err != nil {
				t.Fatal(err)
			}
			want := referenceStep(cfg, DefaultAdam(), ref, refState, step, ids, labels, weights)
			if math.Abs(float64(loss-want)) > 1e-5*math.Max(1, math.Abs(float64(want))) {
				t.Errorf("%d heads, threads %d step %d: loss %v, reference %v", len(cfg.heads()), threads, step, loss, want)
			}
		}
		// Adam divides by the gradient's own size, so a parameter whose
		// gradient nearly cancels moves by a rounding-sensitive amount:
		// parameters get a looser bound than the moments, which are linear
		// in the gradients and would show a lost update at once (off by a
		// whole repeat's share, 1e-3 of the scale or more). The serial
		// scatter's float32 sums of hundreds of repeats round by up to
		// about 1e-5 of the scale (0.9e-5 and 1.04e-5 measured on one
		// thread, plain and with heads): the moments' bound is 3e-5.
		for _, f := range []struct {
			name      string
			got, want []float32
			frac      float64
		}{
			{"E", p.E, ref.E, 5e-4},
			{"W1", p.W1, ref.W1, 5e-4},
			{"M.E", s.State().M.E, refState.M.E, 3e-5},
			{"V.E", s.State().V.E, refState.V.E, 3e-5},
			{"M.W1", s.State().M.W1, refState.M.W1, 3e-5},
			{"M.W2", s.State().M.W2, refState.M.W2, 3e-5},
		} {
			if worst, scale := maxDiff(f.got, f.want); worst > f.frac*scale {
				t.Errorf("%d heads, threads %d: %s differs by up to %g at scale %g", len(cfg.heads()), threads, f.name, worst, scale)
			}
		}
		_ = s.Close()
	}
}

// separable is a data set a linear model classifies perfectly: class c's
// examples draw most ids from their own range and some from a shared one.
func separable(classes, perClass int, rng *rand.Rand) (ids [][]int64, labels []int32) {
	for c := range classes {
		for range perClass {
			row := make([]int64, 2+rng.IntN(6))
			for j := range row {
				if j%3 == 2 {
					row[j] = int64(1 + 10*classes + rng.IntN(10)) // shared noise
				} else {
					row[j] = int64(1 + 10*c + rng.IntN(10))
				}
			}
			ids = append(ids, row)
			labels = append(labels, int32(c))
		}
	}
	return ids, labels
}

// TestStepperLearnsSeparableData trains on a separable set and expects
// the loss to fall and every training example to be classified right.
func TestStepperLearnsSeparableData(t *testing.T) {
	requireRuntime(t)
	rng := rand.New(rand.NewPCG(1, 2))
	ids, labels := separable(3, 40, rng)
	for _, hidden := range []int{0, 16} {
		cfg := ModelConfig{Buckets: 64, Dim: 8, Hidden: hidden, Classes: 3}
		p := NewParams(cfg, 11)
		s, err := NewStepper(cfg, DefaultAdam(), 16, 8, p, 1)
		if err != nil {
			t.Fatal(err)
		}
		weights := make([]float32, len(ids))
		for i := range weights {
			weights[i] = 1
		}
		var first, last float32
		order := rng.Perm(len(ids))
		for step := range 300 {
			start := (step * 16) % len(ids)
			end := min(start+16, len(ids)) // the last batch of an epoch is partial
			var bi [][]int64
			var bl [][]int32
			for _, k := range order[start:end] {
				bi, bl = append(bi, ids[k]), append(bl, []int32{labels[k]})
			}
			loss, err := s.Step(bi, bl, weights[:len(bi)])
			if err != nil {
				t.Fatalf("hidden %d: step %d: %v", hidden, step, err)
			}
			if step == 0 {
				first = loss
			}
			last = loss
		}
		_ = s.Close()
		if !(last < first/10) {
			t.Errorf("hidden %d: loss went from %v to %v", hidden, first, last)
		}
		wrong := 0
		for i, row := range ids {
			logits := Forward(cfg, p, row)
			if int32(argmax(logits)) != labels[i] {
				wrong++
			}
		}
		if wrong > 0 {
			t.Errorf("hidden %d: %d of %d training examples misclassified", hidden, wrong, len(ids))
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

func TestStepRejectsBadBatches(t *testing.T) {
	requireRuntime(t)
	cfg := tinyConfigs[0].cfg
	p := NewParams(cfg, 1)
	before := p.Clone()
	s, err := NewStepper(cfg, DefaultAdam(), 2, 3, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	nan := float32(math.NaN())
	tests := []struct {
		name    string
		ids     [][]int64
		targets [][]int32
		weights []float32
		want    string
	}{
		{"empty", nil, nil, nil, "no examples"},
		{"too many examples", [][]int64{{1}, {2}, {3}}, [][]int32{{0}, {0}, {0}}, []float32{1, 1, 1}, "exceed the batch size 2"},
		{"too many ids", [][]int64{{1, 2, 3, 4}}, [][]int32{{0}}, []float32{1}, "over the limit 3"},
		{"padding id", [][]int64{{1, 0}}, [][]int32{{0}}, []float32{1}, "id 0 outside"},
		{"id past the table", [][]int64{{12}}, [][]int32{{0}}, []float32{1}, "id 12 outside [1, 12)"},
		{"target out of range", [][]int64{{1}}, [][]int32{{3}}, []float32{1}, "target 3 outside [0, 3)"},
		{"negative target", [][]int64{{1}}, [][]int32{{-1}}, []float32{1}, "target -1"},
		{"no target", [][]int64{{1}}, [][]int32{{}}, []float32{1}, "0 targets in the softmax [0, 3), want 1"},
		{"two targets", [][]int64{{1}}, [][]int32{{0, 2}}, []float32{1}, "2 targets in the softmax"},
		{"repeated target", [][]int64{{1}}, [][]int32{{1, 1}}, []float32{1}, "target 1 repeats"},
		{"mismatched lengths", [][]int64{{1}}, [][]int32{{0}, {1}}, []float32{1}, "1 examples but 2 targets"},
		{"NaN weight", [][]int64{{1}}, [][]int32{{0}}, []float32{nan}, "weight NaN"},
		{"negative weight", [][]int64{{1}}, [][]int32{{0}}, []float32{-1}, "weight -1"},
		{"zero weights", [][]int64{{1}}, [][]int32{{0}}, []float32{0}, ErrNoWeight.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Step(tc.ids, tc.targets, tc.weights)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Step error = %v, want it to contain %q", err, tc.want)
			}
			limit := strings.Contains(tc.want, "batch size") || strings.Contains(tc.want, "limit")
			if !limit && !math.IsNaN(float64(referenceStep(cfg, DefaultAdam(), p.Clone(), NewAdamState(cfg), 1, tc.ids, tc.targets, tc.weights))) {
				t.Errorf("referenceStep accepted the batch") // it has no size limits
			}
		})
	}
	compareParams(t, "params after rejected steps", p, before)
	if s.Steps() != 0 {
		t.Errorf("Steps() = %d after rejected steps", s.Steps())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Step([][]int64{{1}}, [][]int32{{0}}, []float32{1}); !errors.Is(err, ErrStepperClosed) {
		t.Fatalf("Step after Close: %v", err)
	}
}

func TestNewStepperRejectsBadArguments(t *testing.T) {
	cfg := tinyConfigs[1].cfg
	good := NewParams(cfg, 1)
	short := good.Clone()
	short.W1 = short.W1[1:]
	tests := []struct {
		name   string
		cfg    ModelConfig
		adam   AdamConfig
		batch  int
		tokens int
		p      *Params
		want   string
	}{
		{"one bucket", ModelConfig{Buckets: 1, Dim: 4, Classes: 3}, DefaultAdam(), 2, 2, good, "buckets"},
		{"one class", ModelConfig{Buckets: 12, Dim: 4, Classes: 1}, DefaultAdam(), 2, 2, good, "classes"},
		{"heads with a gap", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 3, Heads: []student.Head{{Start: 0, End: 1}, {Start: 2, End: 3}}}, DefaultAdam(), 2, 2, good, "heads: head 1"},
		{"heads short of the classes", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 3, Heads: []student.Head{{Start: 0, End: 2}}}, DefaultAdam(), 2, 2, good, "heads: cover 2 classes, want 3"},
		{"empty softmax head", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 3, Heads: []student.Head{{Path: "a", Start: 0, End: 0}, {Start: 0, End: 3}}}, DefaultAdam(), 2, 2, good, `softmax head 0 ("a") has no class`},
		{"params of another shape", cfg, DefaultAdam(), 2, 2, short, "W1 has 19 values, want 20"},
		{"nil params", cfg, DefaultAdam(), 2, 2, nil, "params: nil"},
		{"zero learning rate", cfg, AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, 2, 2, good, "adam lr"},
		{"beta of one", cfg, AdamConfig{LR: 0.1, Beta1: 1, Beta2: 0.999, Eps: 1e-8}, 2, 2, good, "adam beta1"},
		{"negative decay", cfg, AdamConfig{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, DecaySteps: -1}, 2, 2, good, "adam decay steps"},
		{"zero batch", cfg, DefaultAdam(), 0, 2, good, "batch"},
		{"zero tokens", cfg, DefaultAdam(), 2, 0, good, "max tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewStepper(tc.cfg, tc.adam, tc.batch, tc.tokens, tc.p, 1)
			if err == nil {
				_ = s.Close()
				t.Fatal("NewStepper succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
