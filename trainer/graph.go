package trainer

import (
	"github.com/understudy-dev/understudy/internal/onnxgraph"
)

// opset is the ONNX operator set of every graph this package builds.
const opset = 18

// Names of the train-step graph's inputs and outputs. Each parameter P
// (E_u, W1, B1, W2, B2) comes in as P, P.m, P.v (value and Adam moments) and
// goes out as P.new, P.m.new, P.v.new.
const (
	nameInv     = "inv"     // int64 [B, L]: row of E_u per position, 0 = padding
	nameTargets = "targets" // float [B, Classes]: multi-hot Y
	nameWeights = "weights" // float [B]: normalised, summing to 1
	nameLR      = "lr"      // float [1]: bias-corrected learning rate
	nameLoss    = "loss"    // float [1]
	nameEU      = "E_u"     // float [Kmax, Dim]: the batch's embedding rows
	nameSpread  = "spread"  // float [B, Kmax]: coefficients by row (several threads only)
)

// The training objective and its gradients, derived by hand. The train-step
// graph computes exactly these; so does the plain-Go reference the tests
// compare it with (reference_test.go), and the finite-difference test
// (grad_test.go) checks the derivation.
//
// Batch of B examples; example b has feature ids x_b1..x_bL (0 = padding),
// targets Y_b and weight w_b ≥ 0. Normalised weights ŵ_b = w_b / Σ_b' w_b'.
// The output layer's classes are split into heads (ModelConfig.Heads): a
// softmax head chooses one of its classes, a tags head says yes or no to
// each of its own. A plain answer's student has one softmax head over all
// the classes. Y_b is multi-hot: 1 at the one class of each softmax head
// and at each present tag of a tags head, else 0.
//
//	n_b      = #{l : x_bl ≠ 0}                      non-padding count
//	c_bl     = [x_bl ≠ 0] / max(n_b, 1)             averaging coefficients
//	h0_b     = Σ_l c_bl · E[x_bl]                   [Dim]
//	z_b      = h0_b·W1 + B1,  h_b = ReLU(z_b)       (h_b = h0_b without hidden layer)
//	s_b      = h_b·W2 + B2                          logits [Classes]
//	p_bc     = softmax(s_b[k])_c  for c in softmax head k (s_b[k]: its logits)
//	         = σ(s_bc)            for c in a tags head
//	loss     = Σ_b ŵ_b · ( Σ_{softmax heads k} −Σ_{c∈k} Y_bc log p_bc
//	                     + Σ_{tag classes c} −Y_bc log p_bc − (1−Y_bc) log(1−p_bc) )
//
// Each head's term has the same derivative in its logits: for a softmax
// head, ∂/∂s_c (−log p_y) = p_c − Y_c (as Σ_{c∈k} Y_c = 1); for a sigmoid,
// ∂/∂s (−Y log σ(s) − (1−Y) log(1−σ(s))) = σ(s) − Y. So the gradient
// reaching the logits is one expression whatever the heads, and the rest of
// the backward pass does not know them. The sigmoid term is computed as
// softplus(s) − Y·s, which it equals (log σ(s) = −softplus(−s),
// log(1−σ(s)) = −softplus(s), softplus(−s) = softplus(s) − s).
//
// Backward:
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

// stepGraph builds the train-step graph; see the derivation above. Shapes
// are fixed: B examples of L positions, Kmax = B·L+1 gathered embedding rows
// of which row 0 is the padding row.
type stepGraph struct {
	b            *onnxgraph.Builder
	cfg          ModelConfig
	adam         AdamConfig
	batch, toks  int
	kmax         int
	axis0, axis1 string // 1-D int64 axes constants [0] and [1]
	// serialScatter: the session runs on one thread (see embeddingGrad).
	serialScatter bool
}

// buildStepGraph returns the serialized train-step model for a session of
// threads intra-op threads.
func buildStepGraph(cfg ModelConfig, adam AdamConfig, batch, maxTokens, threads int) ([]byte, error) {
	g := &stepGraph{
		serialScatter: threads <= 1,
		b:             onnxgraph.New("understudy_train_step", opset),
		cfg:           cfg,
		adam:          adam,
		batch:         batch,
		toks:          maxTokens,
		kmax:          batch*maxTokens + 1,
	}
	g.axis0 = g.b.ConstInt64s(0)
	g.axis1 = g.b.ConstInt64s(1)
	g.build()
	return g.b.Model()
}

func (g *stepGraph) build() {
	b, cfg := g.b, g.cfg
	fl, i64, fix := onnxgraph.Float, onnxgraph.Int64, onnxgraph.Fixed
	inv := b.Input(nameInv, i64, fix(g.batch), fix(g.toks))
	targets := b.Input(nameTargets, fl, fix(g.batch), fix(cfg.Classes))
	weights := b.Input(nameWeights, fl, fix(g.batch))
	lr := b.Input(nameLR, fl, fix(1))
	eu := g.param(nameEU, g.kmax, cfg.Dim)
	var w1, b1 string
	if cfg.Hidden > 0 {
		w1 = g.param("W1", cfg.Dim, cfg.Hidden)
		b1 = g.param("B1", cfg.Hidden)
	}
	w2 := g.param("W2", cfg.in(), cfg.Classes)
	b2 := g.param("B2", cfg.Classes)

	coef := g.coefficients(inv)
	h0 := g.embed(eu, inv, coef)
	h, z := h0, ""
	if cfg.Hidden > 0 {
		z = b.Op("Gemm", []string{h0, w1, b1})
		h = b.Op("Relu", []string{z})
	}
	logits := b.Op("Gemm", []string{h, w2, b2})
	gs := g.lossAndGrad(logits, targets, weights)

	// Output layer: ∂W2 = hᵀ·G, ∂B2 = Σ_b G, ∂h = G·W2ᵀ.
	g.adamUpdate("W2", b.Op("Gemm", []string{h, gs}, onnxgraph.AttrInt("transA", 1)), lr)
	g.adamUpdate("B2", g.sum(gs, g.axis0, 0), lr)
	gh0 := b.Op("Gemm", []string{gs, w2}, onnxgraph.AttrInt("transB", 1))
	if cfg.Hidden > 0 {
		// ∂z = ∂h ⊙ [z > 0], ∂W1 = h0ᵀ·∂z, ∂B1 = Σ_b ∂z, ∂h0 = ∂z·W1ᵀ.
		active := g.cast(b.Op("Greater", []string{z, b.ConstFloat32(0)}), onnxgraph.Float)
		gz := b.Op("Mul", []string{gh0, active})
		g.adamUpdate("W1", b.Op("Gemm", []string{h0, gz}, onnxgraph.AttrInt("transA", 1)), lr)
		g.adamUpdate("B1", g.sum(gz, g.axis0, 0), lr)
		gh0 = b.Op("Gemm", []string{gz, w1}, onnxgraph.AttrInt("transB", 1))
	}
	g.adamUpdate(nameEU, g.embeddingGrad(inv, coef, gh0), lr)
}

// param declares parameter name's value and moment inputs.
func (g *stepGraph) param(name string, dims ...int) string {
	shape := make([]onnxgraph.Dim, len(dims))
	for i, d := range dims {
		shape[i] = onnxgraph.Fixed(d)
	}
	for _, suffix := range []string{"", ".m", ".v"} {
		g.b.Input(name+suffix, onnxgraph.Float, shape...)
		g.b.Output(name+suffix+".new", onnxgraph.Float, shape...)
	}
	return name
}

// coefficients returns c [B, L] = [inv ≠ 0] / max(n_b, 1).
func (g *stepGraph) coefficients(inv string) string {
	b := g.b
	mask := g.cast(b.Op("Greater", []string{inv, b.ConstInt64(0)}), onnxgraph.Float)
	count := b.Op("Max", []string{g.sum(mask, g.axis1, 1), b.ConstFloat32(1)})
	return b.Op("Div", []string{mask, count})
}

// embed returns h0 [B, Dim] = Σ_l c_bl · E_u[inv_bl], as a batched
// [B,1,L]×[B,L,Dim] product.
func (g *stepGraph) embed(eu, inv, coef string) string {
	b := g.b
	rows := b.Op("Gather", []string{eu, inv}, onnxgraph.AttrInt("axis", 0))
	weighted := b.Op("MatMul", []string{b.Op("Unsqueeze", []string{coef, g.axis1}), rows})
	return b.Op("Reshape", []string{weighted, b.ConstInt64s(int64(g.batch), int64(g.cfg.Dim))})
}

// lossAndGrad emits the loss output and returns G = ŵ ⊙ (p − Y), p the
// heads' probabilities. Each segment of the output (ModelConfig.segments)
// is sliced off the logits unless it is the only one: a plain student's
// graph is a softmax over the whole row, as before heads existed.
func (g *stepGraph) lossAndGrad(logits, targets, weights string) string {
	b := g.b
	segs := g.cfg.segments()
	var probs, terms []string // per segment: p, and Σ-able log-likelihood terms
	for _, sg := range segs {
		s, y := logits, targets
		if len(segs) > 1 {
			s, y = g.slice(logits, sg.start, sg.end), g.slice(targets, sg.start, sg.end)
		}
		if sg.sigmoid {
			// Y·s − softplus(s) = Y log σ(s) + (1−Y) log(1−σ(s))
			probs = append(probs, b.Op("Sigmoid", []string{s}))
			terms = append(terms, b.Op("Sub", []string{b.Op("Mul", []string{y, s}), b.Op("Softplus", []string{s})}))
			continue
		}
		lse := b.Op("ReduceLogSumExp", []string{s, g.axis1}, onnxgraph.AttrInt("keepdims", 1))
		logp := b.Op("Sub", []string{s, lse})
		probs = append(probs, b.Op("Exp", []string{logp}))
		terms = append(terms, b.Op("Mul", []string{y, logp}))
	}
	prob, term := g.concat(probs), g.concat(terms)
	wcol := b.Op("Unsqueeze", []string{weights, g.axis1})

	// loss = −Σ_b ŵ_b Σ_c term_bc
	nll := b.Op("Mul", []string{g.sum(term, g.axis1, 1), wcol})
	total := b.Op("ReduceSum", []string{nll}, onnxgraph.AttrInt("keepdims", 0))
	neg := b.Op("Neg", []string{total})
	b.Node("Reshape", []string{neg, b.ConstInt64s(1)}, []string{nameLoss})
	b.Output(nameLoss, onnxgraph.Float, onnxgraph.Fixed(1))

	return b.Op("Mul", []string{b.Op("Sub", []string{prob, targets}), wcol})
}

// slice returns columns [start, end) of x [B, Classes].
func (g *stepGraph) slice(x string, start, end int) string {
	b := g.b
	return b.Op("Slice", []string{x, b.ConstInt64s(int64(start)), b.ConstInt64s(int64(end)), g.axis1})
}

// concat joins tensors along axis 1; one is returned as it is.
func (g *stepGraph) concat(xs []string) string {
	if len(xs) == 1 {
		return xs[0]
	}
	return g.b.Op("Concat", xs, onnxgraph.AttrInt("axis", 1))
}

// embeddingGrad returns ∂E_u [Kmax, Dim]: per-position gradients
// c_bl·∂h0_b added up per row of E_u. Repeated ids must add up exactly,
// which decides the operator:
//
//   - On one thread, ScatterND with reduction "add" over the positions:
//     ONNX Runtime walks them in order, one row of Dim values each.
//   - On several threads ScatterND races on repeated rows (it splits the
//     positions between threads), and ScatterElements, though race-free,
//     runs element by element in ONNX Runtime 1.30, several times slower.
//     So Go passes the coefficients spread by row, S [B, Kmax] with
//     S_bk = Σ_{l : inv_bl = k} c_bl, and ∂E_u = Sᵀ·∂h0 is one Gemm, which
//     threads split without sharing outputs.
func (g *stepGraph) embeddingGrad(inv, coef, gh0 string) string {
	b := g.b
	n, d := int64(g.batch*g.toks), int64(g.cfg.Dim)
	if !g.serialScatter {
		spread := b.Input(nameSpread, onnxgraph.Float, onnxgraph.Fixed(g.batch), onnxgraph.Fixed(g.kmax))
		return b.Op("Gemm", []string{spread, gh0}, onnxgraph.AttrInt("transA", 1))
	}
	perPos := b.Op("Mul", []string{ // [B, L, Dim]
		b.Op("Unsqueeze", []string{coef, b.ConstInt64s(2)}),
		b.Op("Unsqueeze", []string{gh0, g.axis1}),
	})
	updates := b.Op("Reshape", []string{perPos, b.ConstInt64s(n, d)})
	zeros := b.Op("ConstantOfShape", []string{b.ConstInt64s(int64(g.kmax), d)},
		onnxgraph.AttrTensor("value", onnxgraph.Float32s([]int64{1}, []float32{0})))
	index := b.Op("Reshape", []string{inv, b.ConstInt64s(n, 1)})
	return b.Op("ScatterND", []string{zeros, index, updates}, onnxgraph.AttrString("reduction", "add"))
}

// adamUpdate emits the Adam update of parameter name given its gradient:
// m' = β1·m + (1−β1)·g, v' = β2·v + (1−β2)·g², θ' = θ − lr·m'/(sqrt(v')+ε).
func (g *stepGraph) adamUpdate(name, grad, lr string) {
	b, a := g.b, g.adam
	mul := func(x, y string) string { return b.Op("Mul", []string{x, y}) }
	add := func(x, y string) string { return b.Op("Add", []string{x, y}) }
	m, v := name+".m.new", name+".v.new"
	b.Node("Add", []string{mul(name+".m", b.ConstFloat32(a.Beta1)), mul(grad, b.ConstFloat32(1-a.Beta1))}, []string{m})
	b.Node("Add", []string{mul(name+".v", b.ConstFloat32(a.Beta2)), mul(mul(grad, grad), b.ConstFloat32(1-a.Beta2))}, []string{v})
	den := add(b.Op("Sqrt", []string{v}), b.ConstFloat32(a.Eps))
	step := b.Op("Div", []string{mul(m, lr), den})
	b.Node("Sub", []string{name, step}, []string{name + ".new"})
}

// sum is ReduceSum over the axes constant axes.
func (g *stepGraph) sum(x, axes string, keepdims int64) string {
	return g.b.Op("ReduceSum", []string{x, axes}, onnxgraph.AttrInt("keepdims", keepdims))
}

// cast converts x to element type t.
func (g *stepGraph) cast(x string, t onnxgraph.DataType) string {
	return g.b.Op("Cast", []string{x}, onnxgraph.AttrInt("to", int64(t)))
}
