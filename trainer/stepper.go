package trainer

import (
	"errors"
	"fmt"
	"math"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/understudy-dev/understudy/student"
)

// ErrStepperClosed is returned by Step after Close.
var ErrStepperClosed = errors.New("stepper closed")

// ErrDiverged is returned by Step when the loss is not finite; the
// parameters are left as they were before the step.
var ErrDiverged = errors.New("training diverged: loss is not finite")

// ErrNoWeight is returned for a batch whose weights sum to zero.
var ErrNoWeight = errors.New("batch weights sum to zero")

// Stepper runs optimisation steps through the train-step ONNX graph. All
// its ONNX Runtime tensors are allocated once, at the fixed shapes the
// graph was built for; each Step gathers the batch's embedding rows and
// their moments into them, runs the graph, and scatters the updated rows
// back into Params. A Stepper is safe for concurrent use, though steps run
// one at a time; nobody else may touch its Params during a Step.
type Stepper struct {
	mu      sync.Mutex
	cfg     ModelConfig
	adam    AdamConfig
	batch   int
	toks    int
	kmax    int
	threads int
	p       *Params
	st      *AdamState
	t       int // next Adam step, from 1
	session *ort.AdvancedSession
	values  []ort.Value // every tensor, destroyed on Close

	inv                        *ort.Tensor[int64]
	targets, weights, lr, loss *ort.Tensor[float32]
	spread                     *ort.Tensor[float32] // nil on one thread; see embeddingGrad
	emb                        paramTensors         // E_u: the batch's rows of E
	dense                      []paramTensors

	slot  []int32 // per bucket: its row in E_u, 0 when absent
	uniq  []int64 // per E_u row: its bucket
	prevK int     // rows of E_u filled by the previous step
}

// paramTensors are one parameter's graph inputs (value, moments) and
// outputs, and where the values live in Go: theta, m and v point at the
// Params and AdamState fields (unused for E_u, which moves row by row).
type paramTensors struct {
	in, out     [3]*ort.Tensor[float32] // value, m, v
	theta, m, v *[]float32
	name        string
}

// NewStepper builds the train-step graph for cfg and adam at a fixed batch
// size and token limit, and prepares an ONNX Runtime session with threads
// intra-op threads. Step updates p in place. The ONNX Runtime is
// initialised with student.InitRuntime("") unless it already is.
func NewStepper(cfg ModelConfig, adam AdamConfig, batch, maxTokens int, p *Params, threads int) (*Stepper, error) {
	threads = max(threads, 1)
	if err := checkStepper(cfg, adam, batch, maxTokens, threads, p); err != nil {
		return nil, fmt.Errorf("creating stepper: %w", err)
	}
	if err := student.InitRuntime(""); err != nil {
		return nil, fmt.Errorf("creating stepper: %w", err)
	}
	onnx, err := buildStepGraph(cfg, adam, batch, maxTokens, threads)
	if err != nil {
		return nil, fmt.Errorf("creating stepper: %w", err)
	}
	s := &Stepper{
		cfg: cfg, adam: adam, batch: batch, toks: maxTokens, kmax: batch*maxTokens + 1,
		threads: threads, p: p, st: NewAdamState(cfg), t: 1,
		slot: make([]int32, cfg.Buckets),
	}
	s.uniq = make([]int64, s.kmax)
	if err := s.allocate(); err != nil {
		s.destroyValues()
		return nil, fmt.Errorf("creating stepper: %w", err)
	}
	if err := s.open(onnx, threads); err != nil {
		s.destroyValues()
		return nil, fmt.Errorf("creating stepper: %w", err)
	}
	return s, nil
}

// checkStepper validates NewStepper's arguments.
func checkStepper(cfg ModelConfig, adam AdamConfig, batch, maxTokens, threads int, p *Params) error {
	if err := p.Check(cfg); err != nil {
		return err
	}
	if err := adam.Validate(); err != nil {
		return err
	}
	switch {
	case batch < 1:
		return fmt.Errorf("batch: must be at least 1, got %d", batch)
	case maxTokens < 1:
		return fmt.Errorf("max tokens: must be at least 1, got %d", maxTokens)
	case batch > maxTensorElems/maxTokens || (batch*maxTokens+1) > maxTensorElems/(2*cfg.Dim):
		return fmt.Errorf("batch: %d×%d tokens is too large", batch, maxTokens)
	case threads > 1 && batch*maxTokens+1 > maxTensorElems/batch:
		return fmt.Errorf("batch: %d×%d tokens is too large for %d threads", batch, maxTokens, threads)
	}
	return nil
}

// allocate creates every input and output tensor.
func (s *Stepper) allocate() error {
	var err error
	newT := func(dims ...int64) *ort.Tensor[float32] {
		if err != nil {
			return nil
		}
		var t *ort.Tensor[float32]
		if t, err = ort.NewEmptyTensor[float32](ort.NewShape(dims...)); err == nil {
			s.values = append(s.values, t)
		}
		return t
	}
	newI := func(dims ...int64) *ort.Tensor[int64] {
		if err != nil {
			return nil
		}
		var t *ort.Tensor[int64]
		if t, err = ort.NewEmptyTensor[int64](ort.NewShape(dims...)); err == nil {
			s.values = append(s.values, t)
		}
		return t
	}
	b, l := int64(s.batch), int64(s.toks)
	s.inv = newI(b, l)
	s.targets, s.weights, s.lr, s.loss = newT(b, int64(s.cfg.Classes)), newT(b), newT(1), newT(1)
	if s.threads > 1 {
		s.spread = newT(b, int64(s.kmax))
	}
	param := func(name string, theta, m, v *[]float32, dims ...int64) paramTensors {
		pt := paramTensors{name: name, theta: theta, m: m, v: v}
		for i := range 3 {
			pt.in[i], pt.out[i] = newT(dims...), newT(dims...)
		}
		return pt
	}
	c, d := s.cfg, int64(s.cfg.Dim)
	s.emb = param(nameEU, nil, nil, nil, int64(s.kmax), d)
	if c.Hidden > 0 {
		s.dense = append(s.dense,
			param("W1", &s.p.W1, &s.st.M.W1, &s.st.V.W1, d, int64(c.Hidden)),
			param("B1", &s.p.B1, &s.st.M.B1, &s.st.V.B1, int64(c.Hidden)))
	}
	s.dense = append(s.dense,
		param("W2", &s.p.W2, &s.st.M.W2, &s.st.V.W2, int64(c.in()), int64(c.Classes)),
		param("B2", &s.p.B2, &s.st.M.B2, &s.st.V.B2, int64(c.Classes)))
	if err != nil {
		return fmt.Errorf("allocating tensors: %w", err)
	}
	return nil
}

// open creates the ONNX Runtime session bound to the tensors.
func (s *Stepper) open(onnx []byte, threads int) error {
	inNames := []string{nameInv, nameTargets, nameWeights, nameLR}
	inVals := []ort.Value{s.inv, s.targets, s.weights, s.lr}
	outNames := []string{nameLoss}
	outVals := []ort.Value{s.loss}
	if s.spread != nil {
		inNames, inVals = append(inNames, nameSpread), append(inVals, s.spread)
	}
	for _, pt := range append([]paramTensors{s.emb}, s.dense...) {
		for i, suffix := range []string{"", ".m", ".v"} {
			inNames = append(inNames, pt.name+suffix)
			inVals = append(inVals, pt.in[i])
			outNames = append(outNames, pt.name+suffix+".new")
			outVals = append(outVals, pt.out[i])
		}
	}
	opts, err := student.NewSessionOptions(threads)
	if err != nil {
		return err
	}
	defer opts.Destroy()
	s.session, err = ort.NewAdvancedSessionWithONNXData(onnx, inNames, outNames, inVals, outVals, opts)
	if err != nil {
		return fmt.Errorf("creating train-step session: %w", err)
	}
	return nil
}

// Params returns the parameters Step updates.
func (s *Stepper) Params() *Params { return s.p }

// Reset starts the stepper over as if it were new: its Params set to
// NewParams' weights for seed, in place, its Adam moments zero, its next
// step the first. One stepper, and the ONNX Runtime session and tensors
// behind it, so serves every fit of a training run instead of each fit
// building its own.
func (s *Stepper) Reset(seed uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session == nil {
		return ErrStepperClosed
	}
	initParams(s.cfg, seed, s.p)
	clearParams(&s.st.M)
	clearParams(&s.st.V)
	s.t = 1
	return nil
}

// State returns the optimiser's moments, which Step updates.
func (s *Stepper) State() *AdamState { return s.st }

// Steps returns how many steps have completed.
func (s *Stepper) Steps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t - 1
}

// Step runs one optimisation step on a batch of at most the stepper's
// batch size: ids[i] are example i's feature ids (at most maxTokens, each in
// [1, Buckets)), targets[i] its classes (the one class of each softmax head
// and the present tags of each tags head; of a plain student, its one
// class) and weights[i] ≥ 0 its weight in the loss. It updates the Params
// and returns the batch's weighted mean loss before the update.
func (s *Stepper) Step(ids [][]int64, targets [][]int32, weights []float32) (float32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session == nil {
		return 0, ErrStepperClosed
	}
	sumW, err := checkBatch(s.cfg, s.batch, s.toks, ids, targets, weights)
	if err != nil {
		return 0, err
	}
	if err := s.p.Check(s.cfg); err != nil {
		return 0, fmt.Errorf("running train step: %w", err)
	}
	k := s.load(ids, targets, weights, sumW)
	defer s.release(k)
	if err := s.session.Run(); err != nil {
		return 0, fmt.Errorf("running train step: %w", err)
	}
	loss := s.loss.GetData()[0]
	if math.IsNaN(float64(loss)) || math.IsInf(float64(loss), 0) {
		return loss, ErrDiverged
	}
	s.store(k)
	s.t++
	return loss, nil
}

// checkBatch validates a batch against cfg (and, when positive, the
// stepper's batch size and token limit) and returns the weights' sum.
func checkBatch(cfg ModelConfig, batch, maxTokens int, ids [][]int64, targets [][]int32, weights []float32) (float64, error) {
	n := len(ids)
	switch {
	case n == 0:
		return 0, errors.New("checking batch: no examples")
	case batch > 0 && n > batch:
		return 0, fmt.Errorf("checking batch: %d examples exceed the batch size %d", n, batch)
	case len(targets) != n || len(weights) != n:
		return 0, fmt.Errorf("checking batch: %d examples but %d targets and %d weights", n, len(targets), len(weights))
	}
	heads := cfg.heads()
	var sum float64
	for i, row := range ids {
		if maxTokens > 0 && len(row) > maxTokens {
			return 0, fmt.Errorf("checking batch: example %d has %d ids, over the limit %d", i, len(row), maxTokens)
		}
		for _, id := range row {
			if !validID(cfg, id) {
				return 0, fmt.Errorf("checking batch: example %d: id %d outside [1, %d)", i, id, cfg.Buckets)
			}
		}
		if err := checkTargets(heads, cfg.Classes, targets[i]); err != nil {
			return 0, fmt.Errorf("checking batch: example %d: %w", i, err)
		}
		w := float64(weights[i])
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return 0, fmt.Errorf("checking batch: example %d: weight %v is not a finite non-negative number", i, weights[i])
		}
		sum += w
	}
	if sum == 0 {
		return 0, fmt.Errorf("checking batch: %w", ErrNoWeight)
	}
	return sum, nil
}

// checkTargets reports whether an example's target classes are in
// [0, classes), distinct, and one per softmax head.
func checkTargets(heads []student.Head, classes int, targets []int32) error {
	for j, c := range targets {
		if c < 0 || int(c) >= classes {
			return fmt.Errorf("target %d outside [0, %d)", c, classes)
		}
		for _, d := range targets[:j] {
			if d == c {
				return fmt.Errorf("target %d repeats", c)
			}
		}
	}
	for _, h := range heads {
		if h.Tags {
			continue
		}
		n := 0
		for _, c := range targets {
			if int(c) >= h.Start && int(c) < h.End {
				n++
			}
		}
		if n != 1 {
			head := "the softmax"
			if h.Path != "" {
				head = fmt.Sprintf("softmax head %q", h.Path)
			}
			return fmt.Errorf("%d targets in %s [%d, %d), want 1", n, head, h.Start, h.End)
		}
	}
	return nil
}

// load fills the input tensors for a checked batch and returns K, the
// number of distinct ids, which occupy rows 1..K of E_u.
func (s *Stepper) load(ids [][]int64, targets [][]int32, weights []float32, sumW float64) int {
	inv := s.inv.GetData()
	clear(inv)
	k := 0
	for b, row := range ids {
		for j, id := range row {
			r := s.slot[id]
			if r == 0 {
				k++
				r = int32(k)
				s.slot[id] = r
				s.uniq[k] = id
			}
			inv[b*s.toks+j] = int64(r)
		}
	}
	if s.spread != nil {
		s.spreadCoefficients(ids)
	}
	y, wts, c := s.targets.GetData(), s.weights.GetData(), s.cfg.Classes
	clear(y)
	clear(wts)
	for b := range ids {
		for _, t := range targets[b] {
			y[b*c+int(t)] = 1
		}
		wts[b] = float32(float64(weights[b]) / sumW)
	}
	s.lr.GetData()[0] = s.adam.stepLR(s.t)
	s.gatherRows(k)
	for _, pt := range s.dense {
		copy(pt.in[0].GetData(), *pt.theta)
		copy(pt.in[1].GetData(), *pt.m)
		copy(pt.in[2].GetData(), *pt.v)
	}
	return k
}

// gatherRows copies the K batch rows of E and their moments into E_u and
// zeroes the rows the previous step filled beyond K.
func (s *Stepper) gatherRows(k int) {
	d := s.cfg.Dim
	src := [3][]float32{s.p.E, s.st.M.E, s.st.V.E}
	for i, src := range src {
		dst := s.emb.in[i].GetData()
		for r := 1; r <= k; r++ {
			id := int(s.uniq[r])
			copy(dst[r*d:r*d+d], src[id*d:id*d+d])
		}
		if s.prevK > k {
			clear(dst[(k+1)*d : (s.prevK+1)*d])
		}
	}
	s.prevK = k
}

// store copies the step's outputs back into Params and AdamState.
func (s *Stepper) store(k int) {
	d := s.cfg.Dim
	dst := [3][]float32{s.p.E, s.st.M.E, s.st.V.E}
	for i, dst := range dst {
		src := s.emb.out[i].GetData()
		for r := 1; r <= k; r++ {
			id := int(s.uniq[r])
			copy(dst[id*d:id*d+d], src[r*d:r*d+d])
		}
	}
	for _, pt := range s.dense {
		copy(*pt.theta, pt.out[0].GetData())
		copy(*pt.m, pt.out[1].GetData())
		copy(*pt.v, pt.out[2].GetData())
	}
}

// spreadCoefficients fills the spread input from inv: row b gets 1/n_b at
// the E_u row of each of its n_b positions, summed over repeats. (1/n_b is
// computed in float32, as the graph computes c_bl.)
func (s *Stepper) spreadCoefficients(ids [][]int64) {
	spread, inv := s.spread.GetData(), s.inv.GetData()
	for b, row := range ids {
		c := float32(1) / float32(len(row))
		for j := range row {
			spread[b*s.kmax+int(inv[b*s.toks+j])] += c
		}
	}
}

// release clears the slot table and spread entries load set.
func (s *Stepper) release(k int) {
	for r := 1; r <= k; r++ {
		s.slot[s.uniq[r]] = 0
	}
	if s.spread == nil {
		return
	}
	spread, inv := s.spread.GetData(), s.inv.GetData()
	for p, r := range inv {
		if r != 0 {
			spread[(p/s.toks)*s.kmax+int(r)] = 0
		}
	}
}

// Close frees the session and tensors. It is safe to call more than once.
func (s *Stepper) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.session == nil {
		return nil
	}
	err := s.session.Destroy()
	s.session = nil
	s.destroyValues()
	if err != nil {
		return fmt.Errorf("closing stepper: %w", err)
	}
	return nil
}

func (s *Stepper) destroyValues() {
	for _, v := range s.values {
		_ = v.Destroy()
	}
	s.values = nil
}
