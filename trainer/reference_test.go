package trainer

import "math"

// The plain-Go reference of the train step, used by the tests only: the
// same objective and gradients as the graph (see the derivation in
// graph.go), computed in float64 one example at a time.

// grads are the loss and its gradients for one batch, in float64. E holds a
// row for every id present in the batch, zero-weight examples included.
type grads struct {
	loss           float64
	E              map[int64][]float64
	W1, B1, W2, B2 []float64
}

// referenceGrads computes the loss and gradients of the batch, which must
// have passed checkBatch (sumW is its weights' sum).
func referenceGrads(cfg ModelConfig, p *Params, ids [][]int64, targets [][]int32, weights []float32, sumW float64) grads {
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
		prob, loss := referenceHeads(cfg, a.logits, targets[b])
		g.loss += wn * loss
		gs := make([]float64, c)
		for k, pk := range prob {
			gs[k] = wn * pk
		}
		for _, k := range targets[b] {
			gs[k] -= wn
		}
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

// referenceHeads returns the output probabilities of one example's logits
// and its loss given its target classes: per segment of the output, a
// softmax's −Σ Y log p, or the sigmoids' Σ softplus(s) − Y·s.
func referenceHeads(cfg ModelConfig, logits []float64, targets []int32) (prob []float64, loss float64) {
	y := make([]float64, len(logits))
	for _, k := range targets {
		y[k] = 1
	}
	prob = make([]float64, len(logits))
	for _, sg := range cfg.segments() {
		if sg.sigmoid {
			for k := sg.start; k < sg.end; k++ {
				s := logits[k]
				prob[k] = 1 / (1 + math.Exp(-s))
				loss += softplus(s) - y[k]*s
			}
			continue
		}
		logp := logSoftmax(logits[sg.start:sg.end])
		for i, lp := range logp {
			prob[sg.start+i] = math.Exp(lp)
			loss -= y[sg.start+i] * lp
		}
	}
	return prob, loss
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

// referenceStep is the plain-Go twin of one Stepper.Step at Adam step t
// (t ≥ 1): it computes the same loss and gradients, applies the same lazy
// Adam update to p and st in place, and returns the loss. It returns NaN,
// changing nothing, when an argument is invalid.
func referenceStep(cfg ModelConfig, adam AdamConfig, p *Params, st *AdamState, t int, ids [][]int64, targets [][]int32, weights []float32) float32 {
	if p.Check(cfg) != nil || st == nil || st.M.Check(cfg) != nil || st.V.Check(cfg) != nil || adam.Validate() != nil || t < 1 {
		return float32(math.NaN())
	}
	sumW, err := checkBatch(cfg, 0, 0, ids, targets, weights)
	if err != nil {
		return float32(math.NaN())
	}
	g := referenceGrads(cfg, p, ids, targets, weights, sumW)
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

// logSoftmax returns log(softmax(v)) computed stably.
func logSoftmax(v []float64) []float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	var s float64
	for _, x := range v {
		s += math.Exp(x - m)
	}
	lse := m + math.Log(s)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x - lse
	}
	return out
}
