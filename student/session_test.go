package student

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
)

// sumModel scores an example by s = Σ ids: probs = softmax([s, −s]/10).
func sumModel(t *testing.T, output string) []byte {
	t.Helper()
	b := onnxgraph.New("sum", 18)
	ids := b.Input(InputIDs, onnxgraph.Int64, onnxgraph.Sym("N"), onnxgraph.Sym("L"))
	f := b.Op("Cast", []string{ids}, onnxgraph.AttrInt("to", int64(onnxgraph.Float)))
	s := b.Op("Div", []string{
		b.Op("ReduceSum", []string{f, b.ConstInt64s(1)}, onnxgraph.AttrInt("keepdims", 1)),
		b.ConstFloat32(10),
	})
	logits := b.Op("Concat", []string{s, b.Op("Neg", []string{s})}, onnxgraph.AttrInt("axis", 1))
	b.Node("Softmax", []string{logits}, []string{output}, onnxgraph.AttrInt("axis", -1))
	b.Output(output, onnxgraph.Float, onnxgraph.Sym("N"), onnxgraph.Fixed(2))
	raw, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func wantSum(sum float64) []float64 {
	p := 1 / (1 + math.Exp(-2*sum/10))
	return []float64{p, 1 - p}
}

func newSumSession(t *testing.T) *Session {
	t.Helper()
	s, err := NewSession(sumModel(t, OutputProbs), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSessionRun(t *testing.T) {
	s := newSumSession(t)
	if s.Classes() != 2 {
		t.Fatalf("Classes() = %d, want 2", s.Classes())
	}
	probs, classes, err := s.Run([]int64{1, 2, 3, 4, 0, 0}, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := append(wantSum(6), wantSum(4)...)
	if classes != 2 || len(probs) != 4 {
		t.Fatalf("Run = %v, %d classes", probs, classes)
	}
	for i := range want {
		if math.Abs(float64(probs[i])-want[i]) > 1e-6 {
			t.Fatalf("probs = %v, want %v", probs, want)
		}
	}
}

func TestSessionRunRejectsBadShapes(t *testing.T) {
	s := newSumSession(t)
	for _, tc := range []struct {
		ids  []int64
		n, l int
	}{
		{[]int64{1, 2, 3}, 2, 2},
		{nil, 0, 1},
		{[]int64{1}, 1, 0},
		{[]int64{1}, -1, -1},
	} {
		if _, _, err := s.Run(tc.ids, tc.n, tc.l); err == nil || !strings.Contains(err.Error(), "do not form") {
			t.Errorf("Run(%v, %d, %d) error = %v", tc.ids, tc.n, tc.l, err)
		}
	}
}

func TestNewSessionRejectsBadModels(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model []byte
		want  string
	}{
		{"empty", nil, "empty model"},
		{"garbage", []byte("not a model"), "creating onnx runtime session"},
		{"wrong output name", sumModel(t, "scores"), "Invalid output name: probs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSession(tc.model, 1)
			if err == nil {
				_ = s.Close()
				t.Fatal("NewSession succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestSessionConcurrentRuns runs one session from many goroutines; run
// with -race.
func TestSessionConcurrentRuns(t *testing.T) {
	for _, width := range []int{0, 4} {
		t.Run(fmt.Sprintf("row width %d", width), func(t *testing.T) {
			s, err := NewSessionWithOptions(sumModel(t, OutputProbs), SessionOptions{Threads: 1, RowWidth: width})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			concurrentRuns(t, s)
		})
	}
}

func concurrentRuns(t *testing.T, s *Session) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				v := int64(g*50 + i)
				probs, _, err := s.Run([]int64{v, 1}, 1, 2)
				if err != nil {
					errs <- err
					return
				}
				if math.Abs(float64(probs[0])-wantSum(float64(v + 1))[0]) > 1e-6 {
					errs <- errors.New("wrong probabilities under concurrency")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSessionClose(t *testing.T) {
	s, err := NewSessionWithOptions(sumModel(t, OutputProbs), SessionOptions{Threads: 1, RowWidth: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Run([]int64{1, 2}, 1, 2); err != nil { // leaves an idle tensor pair to free
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Run([]int64{1}, 1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestSessionCUDAFallback asks for CUDA, which the CPU build of ONNX
// Runtime lacks, and expects a working CPU session and a warning.
func TestSessionCUDAFallback(t *testing.T) {
	var logs bytes.Buffer
	s, err := NewSessionWithOptions(sumModel(t, OutputProbs), SessionOptions{
		Threads: 1, UseCUDA: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.OnCUDA() {
		t.Skip("CUDA is available here")
	}
	if !strings.Contains(logs.String(), "CUDA execution provider unavailable, using CPU") {
		t.Errorf("no fallback warning logged: %q", logs.String())
	}
	if _, _, err := s.Run([]int64{1, 2}, 1, 2); err != nil {
		t.Fatal(err)
	}
}
