package trainer

import (
	"math"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

// tinyHeads are a structured answer's heads: a softmax of three classes,
// two tags heads next to each other with an empty one between them (the
// three make one segment of sigmoids), and a softmax of two.
var tinyHeads = []student.Head{
	{Path: "kind", Start: 0, End: 3},
	{Path: "tags", Tags: true, Start: 3, End: 5},
	{Path: "none", Tags: true, Start: 5, End: 5},
	{Path: "more", Tags: true, Start: 5, End: 6},
	{Path: "ok", Start: 6, End: 8},
}

// Tiny models for the exact tests, with and without a hidden layer, plain
// and with heads.
var tinyConfigs = []struct {
	name string
	cfg  ModelConfig
}{
	{"linear", ModelConfig{Buckets: 12, Dim: 4, Classes: 3}},
	{"hidden", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 3}},
	{"heads", ModelConfig{Buckets: 12, Dim: 4, Classes: 8, Heads: tinyHeads}},
	{"heads-hidden", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 8, Heads: tinyHeads}},
}

// tinyTargets turns labels in [0, 3) into the targets of cfg's examples: a
// plain model's one class each; with tinyHeads, the label's class of
// "kind", tags that vary with the example (none, some, all) and a class of
// "ok".
func tinyTargets(cfg ModelConfig, labels []int32) [][]int32 {
	out := make([][]int32, len(labels))
	for i, l := range labels {
		if cfg.Heads == nil {
			out[i] = []int32{l}
			continue
		}
		tags := [][]int32{{3}, {}, {3, 4, 5}, {5}}[i%4]
		out[i] = append(append([]int32{l}, tags...), 6+int32(i+int(l))%2)
	}
	return out
}

// tinyBatch has repeated ids within and across examples, examples of
// different lengths (shorter ones are padded in the graph), an example
// without ids and one with weight zero.
func tinyBatch() (ids [][]int64, labels []int32, weights []float32) {
	ids = [][]int64{
		{1, 2, 2, 5},
		{5, 7},
		{},
		{3, 1, 11, 1, 9},
		{4, 4},
	}
	labels = []int32{0, 2, 1, 1, 0}
	weights = []float32{1, 0.5, 2, 1.5, 0}
	return ids, labels, weights
}

// requireRuntime loads ONNX Runtime or fails with its how-to-fetch error.
func requireRuntime(t testing.TB) {
	t.Helper()
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
}

// params64 are Params in float64, for finite differences.
type params64 struct{ E, W1, B1, W2, B2 []float64 }

func toParams64(p *Params) params64 {
	conv := func(s []float32) []float64 {
		out := make([]float64, len(s))
		for i, v := range s {
			out[i] = float64(v)
		}
		return out
	}
	return params64{conv(p.E), conv(p.W1), conv(p.B1), conv(p.W2), conv(p.B2)}
}

// loss64 is the objective written out independently of forward and
// referenceGrads, in float64: per head, −log of the probability the head
// gives its target (a softmax head's one class; each class of a tags head,
// present or not).
func loss64(cfg ModelConfig, p params64, ids [][]int64, targets [][]int32, weights []float32) float64 {
	var sumW, loss float64
	for _, w := range weights {
		sumW += float64(w)
	}
	d := cfg.Dim
	for b, row := range ids {
		h := make([]float64, d)
		for _, id := range row {
			for j := range d {
				h[j] += p.E[int(id)*d+j] / float64(max(len(row), 1))
			}
		}
		if cfg.Hidden > 0 {
			z := make([]float64, cfg.Hidden)
			for k := range z {
				z[k] = p.B1[k]
				for j := range d {
					z[k] += h[j] * p.W1[j*cfg.Hidden+k]
				}
				z[k] = math.Max(z[k], 0)
			}
			h = z
		}
		s := make([]float64, cfg.Classes)
		for c := range s {
			s[c] = p.B2[c]
			for i := range h {
				s[c] += h[i] * p.W2[i*cfg.Classes+c]
			}
		}
		on := map[int]bool{}
		for _, c := range targets[b] {
			on[int(c)] = true
		}
		var nll float64
		for _, h := range cfg.heads() {
			for c := h.Start; c < h.End; c++ {
				switch {
				case h.Tags && on[c]:
					nll -= math.Log(1 / (1 + math.Exp(-s[c])))
				case h.Tags:
					nll -= math.Log(1 - 1/(1+math.Exp(-s[c])))
				case on[c]:
					var z float64
					for k := h.Start; k < h.End; k++ {
						z += math.Exp(s[k])
					}
					nll -= math.Log(math.Exp(s[c]) / z)
				}
			}
		}
		loss += float64(weights[b]) / sumW * nll
	}
	return loss
}

// TestGradientsMatchFiniteDifferences checks every hand-derived gradient
// against central differences of the loss in float64.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	ids, labels, weights := tinyBatch()
	for _, tc := range tinyConfigs {
		t.Run(tc.name, func(t *testing.T) {
			targets := tinyTargets(tc.cfg, labels)
			p := NewParams(tc.cfg, 7)
			// Larger embeddings than the default init keep hidden units
			// away from the ReLU kink and give gradients some size.
			// Non-zero biases keep the example without ids off the kink too.
			for i := range p.E[tc.cfg.Dim:] {
				p.E[tc.cfg.Dim+i] *= 4
			}
			for i := range p.B1 {
				p.B1[i] = 0.1 * float32(i+1) * float32(1-2*(i%2))
			}
			sumW, err := checkBatch(tc.cfg, 0, 0, ids, targets, weights)
			if err != nil {
				t.Fatal(err)
			}
			g := referenceGrads(tc.cfg, p, ids, targets, weights, sumW)
			p64 := toParams64(p)
			if l := loss64(tc.cfg, p64, ids, targets, weights); math.Abs(l-g.loss) > 1e-6 {
				t.Fatalf("loss %v, independent loss %v", g.loss, l)
			}
			gE := make([]float64, len(p.E))
			for id, row := range g.E {
				copy(gE[int(id)*tc.cfg.Dim:], row)
			}
			check := func(name string, theta []float64, analytic []float64) {
				for i := range theta {
					const h = 1e-6
					orig := theta[i]
					theta[i] = orig + h
					up := loss64(tc.cfg, p64, ids, targets, weights)
					theta[i] = orig - h
					down := loss64(tc.cfg, p64, ids, targets, weights)
					theta[i] = orig
					numeric := (up - down) / (2 * h)
					if math.Abs(numeric-analytic[i]) > 1e-7+1e-5*math.Abs(numeric) {
						t.Errorf("∂%s[%d] = %.10g, finite difference %.10g", name, i, analytic[i], numeric)
					}
				}
			}
			check("E", p64.E, gE)
			check("W2", p64.W2, g.W2)
			check("B2", p64.B2, g.B2)
			if tc.cfg.Hidden > 0 {
				check("W1", p64.W1, g.W1)
				check("B1", p64.B1, g.B1)
			}
			for id := range g.E {
				if !batchHas(ids, id) {
					t.Errorf("gradient row for id %d, which is not in the batch", id)
				}
			}
		})
	}
}

func batchHas(ids [][]int64, id int64) bool {
	for _, row := range ids {
		for _, v := range row {
			if v == id {
				return true
			}
		}
	}
	return false
}
