package trainer

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

// TestExportedModelMatchesForward loads the exported model into a student
// session and compares its probabilities with softmax(Forward/T), of a
// structured answer's model per head (headProbs).
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
	for _, tc := range tinyConfigs {
		t.Run(tc.name, func(t *testing.T) {
			p := NewParams(tc.cfg, 5)
			st := NewAdamState(tc.cfg)
			for step := 1; step <= 5; step++ {
				referenceStep(tc.cfg, DefaultAdam(), p, st, step, ids, tinyTargets(tc.cfg, labels), weights)
			}
			const temp = 1.7
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
				want := headProbs(tc.cfg, Forward(tc.cfg, p, r), temp)
				if tc.cfg.Heads == nil {
					want = softmaxT(Forward(tc.cfg, p, r), temp)
				}
				checkProbs(t, fmt.Sprintf("example %d", i), probs[i*classes:(i+1)*classes], want)
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
					checkProbs(t, fmt.Sprintf("round %d, example %d alone", round, i), got, headProbs(tc.cfg, Forward(tc.cfg, p, r), temp))
				}
			}
		})
	}
}

func checkProbs(t *testing.T, what string, got []float32, want []float64) {
	t.Helper()
	for c := range want {
		if len(got) != len(want) || math.Abs(float64(got[c])-want[c]) > 1e-6 {
			t.Errorf("%s: probs %v, want %v", what, got, want)
			return
		}
	}
}

func softmaxT(logits []float32, temp float64) []float64 {
	out := make([]float64, len(logits))
	var z float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) / temp)
		z += out[i]
	}
	for i := range out {
		out[i] /= z
	}
	return out
}

func TestExportRejectsBadArguments(t *testing.T) {
	cfg := tinyConfigs[0].cfg
	p := NewParams(cfg, 1)
	for _, temp := range []float32{0, -1, float32(math.NaN()), float32(math.Inf(1))} {
		if _, err := ExportInference(cfg, p, temp); err == nil || !strings.Contains(err.Error(), "temperature") {
			t.Errorf("temperature %v: error = %v", temp, err)
		}
	}
	if _, err := ExportInference(cfg, &Params{}, 1); err == nil {
		t.Error("empty params exported")
	}
	if got := Forward(cfg, &Params{}, []int64{1}); got != nil {
		t.Errorf("Forward with empty params = %v, want nil", got)
	}
}
