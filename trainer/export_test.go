package trainer

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
	"github.com/understudy-dev/understudy/student"
)

// TestExportedModelMatchesForward loads the exported model into a student
// session and compares its probabilities with softmax(Forward/T), of a
// structured answer's model per head (headProbs): to float32 rounding
// (1e-6) with the embeddings rounded to float16 as the graph stores them,
// and within halfTolerance of the float32 model that was trained.
func TestExportedModelMatchesForward(t *testing.T) {
	requireRuntime(t)
	ids, labels, weights := tinyBatch()
	// Rows of [5, 6] ids, 0-padded, with ids outside the table (−3, 12, 99),
	// which count as padding.
	const width = 6
	rows := [][]int64{{1, 2, 2, 5}, {5, 7, -3}, {}, {3, 1, 11, 1, 9, 12}, {99, 4, 4}}
	flat := make([]int64, len(rows)*width)
	for i, r := range rows {
		copy(flat[i*width:], r)
	}
	const temp = 1.7
	for _, tc := range tinyConfigs {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParams(tc.cfg, 5)
			st := NewAdamState(tc.cfg)
			for step := 1; step <= 5; step++ {
				referenceStep(tc.cfg, DefaultAdam(), p, st, step, ids, tinyTargets(tc.cfg, labels), weights)
			}
			half := halfParams(p)
			check := func(what string, got []float32, r []int64) {
				t.Helper()
				checkProbs(t, what+", float16 table", got, headProbs(tc.cfg, Forward(tc.cfg, half, r), temp), 1e-6)
				checkProbs(t, what, got, headProbs(tc.cfg, Forward(tc.cfg, p, r), temp), halfTolerance(tc.cfg, p, r, temp))
			}
			onnx, err := ExportInference(tc.cfg, p, temp)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := student.NewSession(onnx, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			sent := slices.Clone(flat)
			probs, classes, err := sess.Run(flat, len(rows), width)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(flat, sent) {
				t.Errorf("Run changed the caller's ids: %v, sent %v", flat, sent)
			}
			if classes != tc.cfg.Classes {
				t.Fatalf("classes = %d, want %d", classes, tc.cfg.Classes)
			}
			for i, r := range rows {
				check(fmt.Sprintf("example %d", i), probs[i*classes:(i+1)*classes], r)
			}
			// One example at a time on reused, padded tensors: a short row
			// after a long one must not see the long one's ids.
			single, err := student.NewSessionWithOptions(onnx, student.SessionOptions{Threads: 1, RowWidth: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer single.Close()
			for round := range 2 {
				for i, r := range rows {
					got, _, err := single.Run(slices.Clone(r), 1, max(len(r), 1))
					if len(r) == 0 {
						got, _, err = single.Run([]int64{0}, 1, 1)
					}
					if err != nil {
						t.Fatal(err)
					}
					check(fmt.Sprintf("round %d, example %d alone", round, i), got, r)
				}
			}
		})
	}
}

func checkProbs(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for c := range want {
		if len(got) != len(want) || math.Abs(float64(got[c])-want[c]) > tol {
			t.Errorf("%s: probs %v, want %v within %.3g", what, got, want, tol)
			return
		}
	}
}

// halfParams returns a copy of p with E rounded to float16, as
// ExportInference stores it.
func halfParams(p *Params) *Params {
	q := p.Clone()
	for i, v := range q.E {
		q.E[i] = onnxgraph.FromFloat16(onnxgraph.ToFloat16(v))
	}
	return q
}

// halfTolerance bounds how far the exported model's probabilities for ids
// may be from the float32 model's, to first order, given that the graph
// stores each embedding e within a relative 2^-11 (2^-25 absolute among
// float16's subnormals): the mean of the rows moves by at most
// δh_j = 2^-11·mean|e_j| + 2^-25 in each dimension; a layer x·W + b moves
// its output k by at most Σ_j δx_j·|W_jk| (a ReLU moves nothing further);
// dividing the logits by the temperature T divides that by T; and softmax
// and sigmoid move a probability by at most half the largest change of a
// logit (a softmax's Jacobian row c sums to 2p_c(1−p_c) ≤ 1/2 in absolute
// value; a sigmoid's slope is at most 1/4). Add 1e-6 for float32 rounding.
func halfTolerance(cfg ModelConfig, p *Params, ids []int64, temp float64) float64 {
	const float32Rounding = 1e-6
	d := cfg.Dim
	dh := make([]float64, d)
	n := 0
	for _, id := range ids {
		if !validID(cfg, id) {
			continue
		}
		n++
		for j, v := range p.E[int(id)*d : int(id)*d+d] {
			dh[j] += math.Abs(float64(v))
		}
	}
	if n == 0 {
		return float32Rounding
	}
	for j := range dh {
		dh[j] = math.Ldexp(dh[j]/float64(n), -11) + math.Ldexp(1, -25)
	}
	moved := func(dx []float64, w []float32, m int) []float64 {
		out := make([]float64, m)
		for i, v := range dx {
			for k, wk := range w[i*m : i*m+m] {
				out[k] += v * math.Abs(float64(wk))
			}
		}
		return out
	}
	if cfg.Hidden > 0 {
		dh = moved(dh, p.W1, cfg.Hidden)
	}
	dz := moved(dh, p.W2, cfg.Classes)
	return float32Rounding + slices.Max(dz)/temp/2
}

// TestExportStoresTableAsFloat16 checks a default-size model's artifact:
// its 2^17×16 embedding table takes 2 bytes a value, 4 MB, not float32's 8.
func TestExportStoresTableAsFloat16(t *testing.T) {
	cfg := benchConfig(0)
	onnx, err := ExportInference(cfg, NewParams(cfg, 1), 1)
	if err != nil {
		t.Fatal(err)
	}
	table := 2 * cfg.Buckets * cfg.Dim
	if len(onnx) < table || len(onnx) > table+4096 {
		t.Errorf("model is %d bytes, want the %d of a float16 table and a few more", len(onnx), table)
	}
}

func TestExportRejectsBadArguments(t *testing.T) {
	cfg := tinyConfigs[0].cfg
	p := NewParams(cfg, 1)
	for _, temp := range []float32{0, -1, float32(math.NaN()), float32(math.Inf(1))} {
		if _, err := ExportInference(cfg, p, temp); err == nil || !strings.Contains(err.Error(), "temperature") {
			t.Errorf("temperature %v: error = %v", temp, err)
		}
	}
	huge := p.Clone()
	huge.E[2*cfg.Dim+1] = -1e5
	if _, err := ExportInference(cfg, huge, 1); err == nil || !strings.Contains(err.Error(), "embedding 1 of row 2 is -100000, past float16's range") {
		t.Errorf("embedding -1e5: error = %v", err)
	}
	if _, err := ExportInference(cfg, &Params{}, 1); err == nil {
		t.Error("empty params exported")
	}
	if got := Forward(cfg, &Params{}, []int64{1}); got != nil {
		t.Errorf("Forward with empty params = %v, want nil", got)
	}
}
