package trainer

import (
	"math"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

// Tiny models for the exact tests, with and without a hidden layer.
var tinyConfigs = []struct {
	name string
	cfg  ModelConfig
}{
	{"linear", ModelConfig{Buckets: 12, Dim: 4, Classes: 3}},
	{"hidden", ModelConfig{Buckets: 12, Dim: 4, Hidden: 5, Classes: 3}},
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
// referenceGrads, in float64.
func loss64(cfg ModelConfig, p params64, ids [][]int64, labels []int32, weights []float32) float64 {
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
		var z float64
		for _, v := range s {
			z += math.Exp(v)
		}
		loss -= float64(weights[b]) / sumW * (s[labels[b]] - math.Log(z))
	}
	return loss
}

// TestGradientsMatchFiniteDifferences checks every hand-derived gradient
// against central differences of the loss in float64.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	ids, labels, weights := tinyBatch()
	for _, tc := range tinyConfigs {
		t.Run(tc.name, func(t *testing.T) {
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
			sumW, err := checkBatch(tc.cfg, 0, 0, ids, labels, weights)
			if err != nil {
				t.Fatal(err)
			}
			g := referenceGrads(tc.cfg, p, ids, labels, weights, sumW)
			p64 := toParams64(p)
			if l := loss64(tc.cfg, p64, ids, labels, weights); math.Abs(l-g.loss) > 1e-6 {
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
					up := loss64(tc.cfg, p64, ids, labels, weights)
					theta[i] = orig - h
					down := loss64(tc.cfg, p64, ids, labels, weights)
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
