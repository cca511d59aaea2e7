package trainer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/understudy-dev/understudy/student"
)

// ModelConfig is the shape of a fastText-style student: a table of hashed
// feature embeddings averaged per example, an optional ReLU hidden layer,
// and an output layer of one or more heads: a softmax over the classes of
// a plain answer, or, for a structured answer, a softmax per field and a
// sigmoid per tag of a tags field.
type ModelConfig struct {
	// Buckets is the number of embedding rows, row 0 included: feature ids
	// are in [1, Buckets) and id 0 is padding.
	Buckets int
	// Dim is the embedding width.
	Dim int
	// Hidden is the hidden layer's width; 0 means no hidden layer.
	Hidden int
	// Classes is the number of labels: of every head together.
	Classes int
	// Heads split the classes into the output heads of a structured
	// answer's student (student.Head: Start and End, and Tags for a head
	// of sigmoids); they must cover [0, Classes) in order. Nil: one
	// softmax over all the classes.
	Heads []student.Head
}

// Limits on a ModelConfig, keeping every tensor addressable with int32.
const (
	maxTensorElems = 1 << 30
	maxClasses     = 1 << 16
)

// Validate reports the first field out of range.
func (c ModelConfig) Validate() error {
	switch {
	case c.Buckets < 2:
		return fmt.Errorf("buckets: must be at least 2, got %d", c.Buckets)
	case c.Dim < 1:
		return fmt.Errorf("dim: must be at least 1, got %d", c.Dim)
	case c.Hidden < 0:
		return fmt.Errorf("hidden: must be at least 0, got %d", c.Hidden)
	case c.Heads == nil && (c.Classes < 2 || c.Classes > maxClasses):
		return fmt.Errorf("classes: must be in [2, %d], got %d", maxClasses, c.Classes)
	case c.Heads != nil && (c.Classes < 1 || c.Classes > maxClasses):
		return fmt.Errorf("classes: must be in [1, %d] with heads, got %d", maxClasses, c.Classes)
	case c.Buckets > maxTensorElems/c.Dim:
		return fmt.Errorf("buckets: %d×%d embeddings exceed %d elements", c.Buckets, c.Dim, maxTensorElems)
	case c.Hidden > 0 && c.Hidden > maxTensorElems/max(c.Dim, c.Classes):
		return fmt.Errorf("hidden: %d is too wide", c.Hidden)
	}
	return checkHeads(c.Heads, c.Classes)
}

// checkHeads reports whether heads cover [0, classes) in order, each
// softmax head with at least one class (a tags head may have none: a
// field whose array was always empty).
func checkHeads(heads []student.Head, classes int) error {
	if heads == nil {
		return nil
	}
	next := 0
	for i, h := range heads {
		switch {
		case h.Start != next || h.End < h.Start:
			return fmt.Errorf("heads: head %d (%q) spans [%d, %d), want it to start at %d", i, h.Path, h.Start, h.End, next)
		case !h.Tags && h.End == h.Start:
			return fmt.Errorf("heads: softmax head %d (%q) has no class", i, h.Path)
		}
		next = h.End
	}
	if next != classes {
		return fmt.Errorf("heads: cover %d classes, want %d", next, classes)
	}
	return nil
}

// heads returns the output heads: Heads, or one softmax over every class.
func (c ModelConfig) heads() []student.Head {
	if c.Heads != nil {
		return c.Heads
	}
	return []student.Head{{Start: 0, End: c.Classes}}
}

// segment is a run of output classes activated alike: one softmax head, or
// adjacent sigmoid classes (tags heads next to each other merge, since a
// sigmoid does not look at its neighbours).
type segment struct {
	start, end int
	sigmoid    bool
}

// segments returns the output layer's segments in class order, without
// the empty ones. A plain model has one: a softmax over every class.
func (c ModelConfig) segments() []segment {
	var out []segment
	for _, h := range c.heads() {
		if h.End == h.Start {
			continue
		}
		if n := len(out); h.Tags && n > 0 && out[n-1].sigmoid && out[n-1].end == h.Start {
			out[n-1].end = h.End
			continue
		}
		out = append(out, segment{start: h.Start, end: h.End, sigmoid: h.Tags})
	}
	return out
}

// in is the width of the output layer's input: Hidden, or Dim without a
// hidden layer.
func (c ModelConfig) in() int {
	if c.Hidden > 0 {
		return c.Hidden
	}
	return c.Dim
}

// Params are a student's weights, row-major: E [Buckets, Dim] (row 0 is
// padding and stays zero), W1 [Dim, Hidden] and B1 [Hidden] (nil without a
// hidden layer), W2 [Hidden or Dim, Classes] and B2 [Classes].
type Params struct {
	E, W1, B1, W2, B2 []float32
}

// NewParams initialises weights for cfg from seed: E uniform in
// ±1/Dim with row 0 zero, W1 He-uniform (for ReLU), W2 Glorot-uniform,
// biases zero. It returns nil when cfg is invalid.
func NewParams(cfg ModelConfig, seed uint64) *Params {
	if cfg.Validate() != nil {
		return nil
	}
	p := zeroParams(cfg)
	initParams(cfg, seed, &p)
	return &p
}

// initParams sets p, shaped for cfg, to NewParams' weights for seed, in
// place.
func initParams(cfg ModelConfig, seed uint64, p *Params) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	uniform := func(dst []float32, limit float64) {
		for i := range dst {
			dst[i] = float32((2*rng.Float64() - 1) * limit)
		}
	}
	uniform(p.E, 1/float64(cfg.Dim))
	uniform(p.W2, math.Sqrt(6/float64(cfg.in()+cfg.Classes)))
	clear(p.B2)
	clear(p.E[:cfg.Dim])
	if cfg.Hidden > 0 {
		uniform(p.W1, math.Sqrt(6/float64(cfg.Dim)))
		clear(p.B1)
	}
}

// clearParams sets every value of p to zero.
func clearParams(p *Params) {
	for _, s := range [][]float32{p.E, p.W1, p.B1, p.W2, p.B2} {
		clear(s)
	}
}

// zeroParams returns all-zero Params shaped for cfg.
func zeroParams(cfg ModelConfig) Params {
	p := Params{
		E:  make([]float32, cfg.Buckets*cfg.Dim),
		W2: make([]float32, cfg.in()*cfg.Classes),
		B2: make([]float32, cfg.Classes),
	}
	if cfg.Hidden > 0 {
		p.W1 = make([]float32, cfg.Dim*cfg.Hidden)
		p.B1 = make([]float32, cfg.Hidden)
	}
	return p
}

// Check reports whether p's slices have the lengths cfg needs.
func (p *Params) Check(cfg ModelConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if p == nil {
		return errors.New("params: nil")
	}
	for _, f := range []struct {
		name string
		got  []float32
		n    int
	}{
		{"E", p.E, cfg.Buckets * cfg.Dim},
		{"W1", p.W1, cfg.Dim * cfg.Hidden},
		{"B1", p.B1, cfg.Hidden},
		{"W2", p.W2, cfg.in() * cfg.Classes},
		{"B2", p.B2, cfg.Classes},
	} {
		if len(f.got) != f.n {
			return fmt.Errorf("params: %s has %d values, want %d", f.name, len(f.got), f.n)
		}
	}
	return nil
}

// Clone returns a deep copy of p.
func (p *Params) Clone() *Params {
	clone := func(s []float32) []float32 {
		if s == nil {
			return nil
		}
		return append([]float32(nil), s...)
	}
	return &Params{E: clone(p.E), W1: clone(p.W1), B1: clone(p.B1), W2: clone(p.W2), B2: clone(p.B2)}
}

// AdamConfig holds the optimiser's hyperparameters.
type AdamConfig struct {
	// LR is the learning rate. Default 0.05.
	LR float32
	// Beta1 is the first-moment decay. Default 0.9.
	Beta1 float32
	// Beta2 is the second-moment decay. Default 0.999.
	Beta2 float32
	// Eps is added to the root of the second moment. Default 1e-8.
	Eps float32
	// DecaySteps makes the learning rate fall as the steps add up, to
	// LR/sqrt(1 + t/DecaySteps) at step t; 0 keeps it constant. Default
	// 150: a run on a few hundred pairs, which takes that many steps,
	// keeps nearly all of LR, while one on thousands of pairs, which
	// overfits its rare features within two epochs at LR, slows down.
	DecaySteps int
}

// DefaultAdam returns the default optimiser settings.
func DefaultAdam() AdamConfig {
	return AdamConfig{LR: 0.05, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, DecaySteps: 150}
}

// Validate reports the first setting out of range.
func (a AdamConfig) Validate() error {
	finite := func(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
	switch {
	case !finite(a.LR) || a.LR <= 0:
		return fmt.Errorf("adam lr: must be positive, got %v", a.LR)
	case !finite(a.Beta1) || a.Beta1 < 0 || a.Beta1 >= 1:
		return fmt.Errorf("adam beta1: must be in [0, 1), got %v", a.Beta1)
	case !finite(a.Beta2) || a.Beta2 < 0 || a.Beta2 >= 1:
		return fmt.Errorf("adam beta2: must be in [0, 1), got %v", a.Beta2)
	case !finite(a.Eps) || a.Eps <= 0:
		return fmt.Errorf("adam eps: must be positive, got %v", a.Eps)
	case a.DecaySteps < 0:
		return fmt.Errorf("adam decay steps: must be at least 0, got %d", a.DecaySteps)
	}
	return nil
}

// stepLR is Adam's bias-corrected learning rate at step t (t ≥ 1), after
// the decay: lr·sqrt(1−β2^t)/(1−β1^t), lr = LR/sqrt(1 + t/DecaySteps).
func (a AdamConfig) stepLR(t int) float32 {
	b1t := math.Pow(float64(a.Beta1), float64(t))
	b2t := math.Pow(float64(a.Beta2), float64(t))
	lr := float64(a.LR)
	if a.DecaySteps > 0 {
		lr /= math.Sqrt(1 + float64(t)/float64(a.DecaySteps))
	}
	return float32(lr * math.Sqrt(1-b2t) / (1 - b1t))
}

// AdamState is the optimiser's first (M) and second (V) moments, shaped
// like the Params they belong to. Embedding rows have their own moments,
// updated only when the row is in a batch (lazy Adam).
type AdamState struct {
	M, V Params
}

// NewAdamState returns zero moments for cfg, or nil when cfg is invalid.
func NewAdamState(cfg ModelConfig) *AdamState {
	if cfg.Validate() != nil {
		return nil
	}
	return &AdamState{M: zeroParams(cfg), V: zeroParams(cfg)}
}

// Forward returns the logits [Classes] of one example given by its feature
// ids (0 and ids outside [1, Buckets) count as padding). It returns nil
// when p does not fit cfg.
func Forward(cfg ModelConfig, p *Params, ids []int64) []float32 {
	if p.Check(cfg) != nil {
		return nil
	}
	a := forward(cfg, p, ids)
	out := make([]float32, cfg.Classes)
	for c, v := range a.logits {
		out[c] = float32(v)
	}
	return out
}

// activations are one example's forward values, in float64.
type activations struct {
	count  int       // non-padding positions
	h0     []float64 // mean embedding [Dim]
	z      []float64 // hidden pre-activation [Hidden]
	h      []float64 // output layer input [in]
	logits []float64 // [Classes]
}

// validID reports whether id names a real embedding row.
func validID(cfg ModelConfig, id int64) bool {
	return id >= 1 && id < int64(cfg.Buckets)
}

func forward(cfg ModelConfig, p *Params, ids []int64) activations {
	d := cfg.Dim
	a := activations{h0: make([]float64, d)}
	for _, id := range ids {
		if !validID(cfg, id) {
			continue
		}
		a.count++
		row := p.E[int(id)*d : int(id)*d+d]
		for j, v := range row {
			a.h0[j] += float64(v)
		}
	}
	if a.count > 0 {
		for j := range a.h0 {
			a.h0[j] /= float64(a.count)
		}
	}
	a.h = a.h0
	if cfg.Hidden > 0 {
		a.z = affine(a.h0, p.W1, p.B1, cfg.Hidden)
		a.h = make([]float64, cfg.Hidden)
		for k, v := range a.z {
			a.h[k] = max(v, 0)
		}
	}
	a.logits = affine(a.h, p.W2, p.B2, cfg.Classes)
	return a
}

// affine returns x·W + b for x [n], W [n, m] row-major, b [m].
func affine(x []float64, w, b []float32, m int) []float64 {
	out := make([]float64, m)
	for k := range out {
		out[k] = float64(b[k])
	}
	for i, xi := range x {
		if xi == 0 {
			continue
		}
		row := w[i*m : i*m+m]
		for k, v := range row {
			out[k] += xi * float64(v)
		}
	}
	return out
}
