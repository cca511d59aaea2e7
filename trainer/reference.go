package trainer

import (
	"errors"
	"fmt"
	"math"
)

// The training objective and its gradients, derived by hand. The ONNX
// train-step graph (graph.go) and the plain-Go reference below compute
// exactly these; the finite-difference test checks the derivation.
//
// Batch of B examples; example b has feature ids x_b1..x_bL (0 = padding),
// label y_b and weight w_b ≥ 0. Normalised weights ŵ_b = w_b / Σ_b' w_b'.
//
//	n_b      = #{l : x_bl ≠ 0}                      non-padding count
//	c_bl     = [x_bl ≠ 0] / max(n_b, 1)             averaging coefficients
//	h0_b     = Σ_l c_bl · E[x_bl]                   [Dim]
//	z_b      = h0_b·W1 + B1,  h_b = ReLU(z_b)       (h_b = h0_b without hidden layer)
//	s_b      = h_b·W2 + B2                          logits [Classes]
//	p_b      = softmax(s_b)
//	loss     = −Σ_b ŵ_b · log p_b[y_b]
//
// Backward, with Y_b the one-hot row of y_b:
//
//	G_b      = ∂loss/∂s_b = ŵ_b · (p_b − Y_b)        [Classes]
//	∂B2      = Σ_b G_b
//	∂W2      = Σ_b h_bᵀ G_b  = hᵀ·G                  [in, Classes]
//	∂h_b     = G_b · W2ᵀ
//	∂z_b     = ∂h_b ⊙ [z_b > 0]                     (hidden layer only)
//	∂B1      = Σ_b ∂z_b
//	∂W1      = h0ᵀ · ∂z
//	∂h0_b    = ∂z_b · W1ᵀ                           (= ∂h_b without hidden layer)
//	∂E[r]    = Σ_{b,l : x_bl = r} c_bl · ∂h0_b      (scatter-add over positions)
//
// Lazy Adam at step t ≥ 1 with lr_t = lr·sqrt(1−β2^t)/(1−β1^t), for every
// dense parameter and for the embedding rows present in the batch only:
//
//	m ← β1·m + (1−β1)·g
//	v ← β2·v + (1−β2)·g²
//	θ ← θ − lr_t · m / (sqrt(v) + ε)

// ErrNoWeight is returned for a batch whose weights sum to zero.
var ErrNoWeight = errors.New("batch weights sum to zero")

// checkBatch validates a batch against cfg (and, when positive, the
// stepper's batch size and token limit) and returns the weights' sum.
func checkBatch(cfg ModelConfig, batch, maxTokens int, ids [][]int64, labels []int32, weights []float32) (float64, error) {
	n := len(ids)
	switch {
	case n == 0:
		return 0, errors.New("checking batch: no examples")
	case batch > 0 && n > batch:
		return 0, fmt.Errorf("checking batch: %d examples exceed the batch size %d", n, batch)
	case len(labels) != n || len(weights) != n:
		return 0, fmt.Errorf("checking batch: %d examples but %d labels and %d weights", n, len(labels), len(weights))
	}
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
		if labels[i] < 0 || int(labels[i]) >= cfg.Classes {
			return 0, fmt.Errorf("checking batch: example %d: label %d outside [0, %d)", i, labels[i], cfg.Classes)
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

// grads are the loss and its gradients for one batch, in float64. E holds a
// row for every id present in the batch, zero-weight examples included.
type grads struct {
	loss           float64
	E              map[int64][]float64
	W1, B1, W2, B2 []float64
}

// referenceGrads computes the loss and gradients of the batch, which must
// have passed checkBatch (sumW is its weights' sum).
func referenceGrads(cfg ModelConfig, p *Params, ids [][]int64, labels []int32, weights []float32, sumW float64) grads {
	in, c := cfg.in(), cfg.Classes
	g := grads{
		E:  make(map[int64][]float64),
		W2: make([]float64, in*c),
		B2: make([]float64, c),
	}
	if cfg.Hidden > 0 {
		g.W1 = make([]float64, cfg.Dim*cfg.Hidden)
		g.B1 = make([]float64, cfg.Hidden)
	}
	for b, row := range ids {
		a := forward(cfg, p, row)
		wn := float64(weights[b]) / sumW
		logp := logSoftmax(a.logits)
		g.loss -= wn * logp[labels[b]]
		gs := make([]float64, c)
		for k, lp := range logp {
			gs[k] = wn * math.Exp(lp)
		}
		gs[labels[b]] -= wn
		gh0 := backLayers(cfg, p, a, gs, &g)
		coef := 1 / float64(max(a.count, 1))
		for _, id := range row {
			ge, ok := g.E[id]
			if !ok {
				ge = make([]float64, cfg.Dim)
				g.E[id] = ge
			}
			for j, v := range gh0 {
				ge[j] += coef * v
			}
		}
	}
	return g
}

// backLayers accumulates one example's dense gradients into g given
// ∂loss/∂logits gs, and returns ∂loss/∂h0.
func backLayers(cfg ModelConfig, p *Params, a activations, gs []float64, g *grads) []float64 {
	in, c := cfg.in(), cfg.Classes
	gh := make([]float64, in)
	for i := range in {
		for k := range c {
			g.W2[i*c+k] += a.h[i] * gs[k]
			gh[i] += float64(p.W2[i*c+k]) * gs[k]
		}
	}
	for k := range c {
		g.B2[k] += gs[k]
	}
	if cfg.Hidden == 0 {
		return gh
	}
	hd, d := cfg.Hidden, cfg.Dim
	gz := make([]float64, hd)
	for k := range hd {
		if a.z[k] > 0 {
			gz[k] = gh[k]
		}
		g.B1[k] += gz[k]
	}
	gh0 := make([]float64, d)
	for j := range d {
		for k := range hd {
			g.W1[j*hd+k] += a.h0[j] * gz[k]
			gh0[j] += float64(p.W1[j*hd+k]) * gz[k]
		}
	}
	return gh0
}

// ReferenceStep is the plain-Go twin of one Stepper.Step at Adam step t
// (t ≥ 1): it computes the same loss and gradients, applies the same lazy
// Adam update to p and st in place, and returns the loss. It returns NaN,
// changing nothing, when an argument is invalid.
func ReferenceStep(cfg ModelConfig, adam AdamConfig, p *Params, st *AdamState, t int, ids [][]int64, labels []int32, weights []float32) float32 {
	if p.Check(cfg) != nil || st == nil || st.M.Check(cfg) != nil || st.V.Check(cfg) != nil || adam.Validate() != nil || t < 1 {
		return float32(math.NaN())
	}
	sumW, err := checkBatch(cfg, 0, 0, ids, labels, weights)
	if err != nil {
		return float32(math.NaN())
	}
	g := referenceGrads(cfg, p, ids, labels, weights, sumW)
	lr := adam.stepLR(t)
	d := cfg.Dim
	for id, ge := range g.E {
		r := int(id) * d
		adamUpdate(adam, lr, p.E[r:r+d], st.M.E[r:r+d], st.V.E[r:r+d], ge)
	}
	adamUpdate(adam, lr, p.W1, st.M.W1, st.V.W1, g.W1)
	adamUpdate(adam, lr, p.B1, st.M.B1, st.V.B1, g.B1)
	adamUpdate(adam, lr, p.W2, st.M.W2, st.V.W2, g.W2)
	adamUpdate(adam, lr, p.B2, st.M.B2, st.V.B2, g.B2)
	return float32(g.loss)
}

// adamUpdate applies one Adam update in float32, operation by operation as
// the graph does.
func adamUpdate(a AdamConfig, lr float32, theta, m, v []float32, g []float64) {
	c1, c2 := 1-a.Beta1, 1-a.Beta2
	for i, gi64 := range g {
		gi := float32(gi64)
		m[i] = a.Beta1*m[i] + c1*gi
		v[i] = a.Beta2*v[i] + c2*(gi*gi)
		theta[i] -= lr * m[i] / (float32(math.Sqrt(float64(v[i]))) + a.Eps)
	}
}
