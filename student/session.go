package student

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Names of a student model's input and output. The input is int64 [N, L]
// hashed feature ids with 0 as padding; the output is float32 [N, classes]
// class probabilities.
const (
	InputIDs    = "ids"
	OutputProbs = "probs"
	// MetadataBuckets, in a model's custom metadata, is its embedding
	// table's row count. A model that has it leaves checking ids to Run.
	MetadataBuckets = "buckets"
)

// ErrClosed is returned by Run on a closed Session.
var ErrClosed = errors.New("session closed")

// SessionOptions configures NewSessionWithOptions.
type SessionOptions struct {
	// Threads is ONNX Runtime's intra-op thread count. Default 1.
	Threads int
	// UseCUDA appends the CUDA execution provider before the CPU one; when
	// CUDA is not available the session falls back to CPU and logs a
	// warning. Default false.
	UseCUDA bool
	// CUDADevice is the CUDA device id used with UseCUDA. Default 0.
	CUDADevice int
	// Logger receives the CUDA fallback warning. Default slog.Default().
	Logger *slog.Logger
	// RowWidth, when not 0, is the width single examples are padded to
	// (with 0, padding) so that Run reuses their input and output tensors
	// instead of creating and freeing two through cgo on every call. A
	// single example wider than RowWidth takes the general path. Load sets
	// it to the featurizer's MaxTokens. Default 0: no reuse.
	RowWidth int
}

// Session is an inference session over a student model. Run is safe for
// concurrent use; Close waits for runs in flight.
type Session struct {
	mu      sync.RWMutex
	sess    *ort.DynamicAdvancedSession
	classes int
	cuda    bool
	// buckets, when not 0, is the model's table size: Run turns ids
	// outside [0, buckets) into padding, which the graph does not do.
	buckets int64
	// rowWidth is SessionOptions.RowWidth; rows are the idle tensor pairs
	// of single examples, at most maxIdleRows of them, freed by Close.
	rowWidth int
	rowsMu   sync.Mutex
	rows     []*row
}

// row is a reusable single-example input [1, width] and output [1, classes].
type row struct {
	ids   []int64
	probs []float32
	in    *ort.Tensor[int64]
	out   *ort.Tensor[float32]
}

// maxIdleRows bounds the idle tensor pairs a Session keeps: more than the
// predictions that can run at once on a few cores.
const maxIdleRows = 64

// NewSession loads a student model from its ONNX bytes onto the CPU with
// threads intra-op threads. InitRuntime("") is called first if the runtime
// is not loaded yet.
func NewSession(onnx []byte, threads int) (*Session, error) {
	return NewSessionWithOptions(onnx, SessionOptions{Threads: threads})
}

// NewSessionWithOptions loads a student model from its ONNX bytes, checks
// that it maps "ids" [N, L] to "probs" [N, classes], and returns a session.
func NewSessionWithOptions(onnx []byte, o SessionOptions) (*Session, error) {
	if err := InitRuntime(""); err != nil {
		return nil, err
	}
	if len(onnx) == 0 {
		return nil, errors.New("creating session: empty model")
	}
	if o.Threads <= 0 {
		o.Threads = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sess, cuda, err := createSession(onnx, o)
	if err != nil {
		return nil, err
	}
	s := &Session{sess: sess, cuda: cuda, rowWidth: max(o.RowWidth, 0)}
	if s.buckets, err = readBuckets(sess); err != nil {
		_ = sess.Destroy()
		return nil, err
	}
	if s.classes, err = s.probe(); err != nil {
		_ = sess.Destroy()
		return nil, err
	}
	// Building the session parsed the model and optimised its graph in
	// copies of the weights that are free now but stay resident in
	// glibc's heap: 5 MB a session at the default size.
	releaseFreed()
	return s, nil
}

// createSession creates the ORT session, on CUDA when asked and available,
// else on CPU.
func createSession(onnx []byte, o SessionOptions) (*ort.DynamicAdvancedSession, bool, error) {
	if o.UseCUDA {
		sess, err := newORTSession(onnx, o, true)
		if err == nil {
			return sess, true, nil
		}
		o.Logger.Warn("student: CUDA execution provider unavailable, using CPU", "err", err)
	}
	sess, err := newORTSession(onnx, o, false)
	return sess, false, err
}

func newORTSession(onnx []byte, o SessionOptions, cuda bool) (*ort.DynamicAdvancedSession, error) {
	opts, err := NewSessionOptions(o.Threads)
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	if cuda {
		if err := appendCUDA(opts, o.CUDADevice); err != nil {
			return nil, err
		}
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(onnx, []string{InputIDs}, []string{OutputProbs}, opts)
	if err != nil {
		return nil, fmt.Errorf("creating onnx runtime session: %w", err)
	}
	return sess, nil
}

// NewSessionOptions returns ORT session options for intra-op threads
// threads, one inter-op thread and all graph optimisations. The caller
// destroys them. Trainer sessions use it too.
func NewSessionOptions(threads int) (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	if threads <= 0 {
		threads = 1
	}
	for _, set := range []func() error{
		func() error { return opts.SetIntraOpNumThreads(threads) },
		func() error { return opts.SetInterOpNumThreads(1) },
		func() error { return opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
	} {
		if err := set(); err != nil {
			_ = opts.Destroy()
			return nil, fmt.Errorf("setting session options: %w", err)
		}
	}
	return opts, nil
}

// appendCUDA adds the CUDA execution provider on device to opts.
func appendCUDA(opts *ort.SessionOptions, device int) error {
	cudaOpts, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("creating cuda provider options: %w", err)
	}
	defer cudaOpts.Destroy()
	if err := cudaOpts.Update(map[string]string{"device_id": fmt.Sprint(device)}); err != nil {
		return fmt.Errorf("setting cuda provider options: %w", err)
	}
	if err := opts.AppendExecutionProviderCUDA(cudaOpts); err != nil {
		return fmt.Errorf("appending cuda execution provider: %w", err)
	}
	return nil
}

// readBuckets returns the model's MetadataBuckets, 0 when it has none.
func readBuckets(sess *ort.DynamicAdvancedSession) (int64, error) {
	meta, err := sess.GetModelMetadata()
	if err != nil {
		return 0, fmt.Errorf("reading model metadata: %w", err)
	}
	defer meta.Destroy()
	v, ok, err := meta.LookupCustomMetadataMap(MetadataBuckets)
	if err != nil {
		return 0, fmt.Errorf("reading model metadata: %w", err)
	}
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("reading model metadata: %s %q is not a row count", MetadataBuckets, v)
	}
	return n, nil
}

// probe runs one all-padding example to learn and check the output shape.
func (s *Session) probe() (int, error) {
	in, err := ort.NewTensor(ort.NewShape(1, 1), []int64{0})
	if err != nil {
		return 0, fmt.Errorf("probing model: %w", err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.sess.Run([]ort.Value{in}, outs); err != nil {
		return 0, fmt.Errorf("probing model: %w", err)
	}
	defer outs[0].Destroy()
	shape := outs[0].GetShape()
	if _, ok := outs[0].(*ort.Tensor[float32]); !ok || len(shape) != 2 || shape[0] != 1 || shape[1] < 1 {
		return 0, fmt.Errorf("probing model: output %q must be float32 [N, classes], got %v %v", OutputProbs, ort.TensorElementDataType(outs[0].DataType()), shape)
	}
	return int(shape[1]), nil
}

// Classes returns the number of classes the model scores.
func (s *Session) Classes() int { return s.classes }

// OnCUDA reports whether the session runs on the CUDA execution provider.
func (s *Session) OnCUDA() bool { return s.cuda }

// Run scores n examples of l feature ids each (ids is row-major [n, l], 0
// is padding; ids outside the model's table count as padding) and returns
// row-major probabilities [n, classes].
func (s *Session) Run(ids []int64, n, l int) (probs []float32, classes int, err error) {
	if n <= 0 || l <= 0 || n > math.MaxInt32/l || len(ids) != n*l {
		return nil, 0, fmt.Errorf("running student: %d ids do not form [%d, %d]", len(ids), n, l)
	}
	if n == 1 && l <= s.rowWidth {
		return s.runRow(ids)
	}
	ids = s.inTable(ids)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return nil, 0, ErrClosed
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(l)), ids)
	if err != nil {
		return nil, 0, fmt.Errorf("running student: %w", err)
	}
	defer in.Destroy()
	probs = make([]float32, n*s.classes)
	out, err := ort.NewTensor(ort.NewShape(int64(n), int64(s.classes)), probs)
	if err != nil {
		return nil, 0, fmt.Errorf("running student: %w", err)
	}
	defer out.Destroy()
	if err := s.sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		return nil, 0, fmt.Errorf("running student: %w", err)
	}
	return probs, s.classes, nil
}

// runRow scores one example on a reused tensor pair, padded to rowWidth.
func (s *Session) runRow(ids []int64) ([]float32, int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return nil, 0, ErrClosed
	}
	r, err := s.getRow()
	if err != nil {
		return nil, 0, fmt.Errorf("running student: %w", err)
	}
	defer s.putRow(r)
	copy(r.ids, ids)
	clear(r.ids[len(ids):])
	s.padOutside(r.ids[:len(ids)])
	if err := s.sess.Run([]ort.Value{r.in}, []ort.Value{r.out}); err != nil {
		return nil, 0, fmt.Errorf("running student: %w", err)
	}
	return slices.Clone(r.probs), s.classes, nil
}

// getRow takes an idle tensor pair or makes one. The caller holds s.mu.
func (s *Session) getRow() (*row, error) {
	s.rowsMu.Lock()
	if n := len(s.rows); n > 0 {
		r := s.rows[n-1]
		s.rows = s.rows[:n-1]
		s.rowsMu.Unlock()
		return r, nil
	}
	s.rowsMu.Unlock()
	r := &row{ids: make([]int64, s.rowWidth), probs: make([]float32, s.classes)}
	var err error
	if r.in, err = ort.NewTensor(ort.NewShape(1, int64(s.rowWidth)), r.ids); err != nil {
		return nil, err
	}
	if r.out, err = ort.NewTensor(ort.NewShape(1, int64(s.classes)), r.probs); err != nil {
		_ = r.in.Destroy()
		return nil, err
	}
	return r, nil
}

// putRow keeps r for the next single example, or frees it when enough
// are idle.
func (s *Session) putRow(r *row) {
	s.rowsMu.Lock()
	if len(s.rows) < maxIdleRows {
		s.rows = append(s.rows, r)
		r = nil
	}
	s.rowsMu.Unlock()
	if r != nil {
		r.destroy()
	}
}

func (r *row) destroy() {
	_ = r.in.Destroy()
	_ = r.out.Destroy()
}

// inTable returns ids, or a copy with the ids outside the model's table
// turned into padding when the graph leaves that to Run.
func (s *Session) inTable(ids []int64) []int64 {
	if !slices.ContainsFunc(ids, s.outside) {
		return ids
	}
	out := slices.Clone(ids)
	s.padOutside(out)
	return out
}

// padOutside turns the ids outside the model's table into padding, in
// place, when the graph leaves that to Run.
func (s *Session) padOutside(ids []int64) {
	for i, id := range ids {
		if s.outside(id) {
			ids[i] = 0
		}
	}
}

func (s *Session) outside(id int64) bool {
	return s.buckets != 0 && uint64(id) >= uint64(s.buckets)
}

// Close frees the ONNX Runtime session after runs in flight finish. It is
// safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	s.rowsMu.Lock()
	for _, r := range s.rows {
		r.destroy()
	}
	s.rows = nil
	s.rowsMu.Unlock()
	err := s.sess.Destroy()
	s.sess = nil
	releaseFreed()
	if err != nil {
		return fmt.Errorf("closing session: %w", err)
	}
	return nil
}
