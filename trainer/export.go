package trainer

import (
	"fmt"
	"math"
	"strconv"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
	"github.com/understudy-dev/understudy/student"
)

// maxFloat16 is float16's largest finite value: an embedding beyond it
// would be ±Inf in the exported table.
const maxFloat16 = 65504

// ExportInference returns the inference model of a trained student: its
// weights as initializers, input "ids" int64 [N, L] (N and L dynamic, 0 is
// padding), output "probs" float32 [N, Classes] = softmax(logits /
// temperature), of a structured answer's student per head (a softmax per
// softmax head, a sigmoid per tag: see headProbs). It computes what
// Forward computes with the embedding table rounded to float16: the graph
// stores E as float16, half the memory of a loaded model, and casts the
// rows it gathers to float32 before the mean, so that the rest runs in
// float32 (see TestExportedModelMatchesForward for the error this adds,
// a relative 2^-11 of each embedding at most). The graph does not check
// that ids lie in [0, Buckets): the model's metadata "buckets" tells
// student.Session, which turns the ids outside into padding before a run.
// Graphs exported before that check them themselves, with three more nodes.
func ExportInference(cfg ModelConfig, p *Params, temperature float32) ([]byte, error) {
	if err := p.Check(cfg); err != nil {
		return nil, fmt.Errorf("exporting inference model: %w", err)
	}
	t := float64(temperature)
	if math.IsNaN(t) || math.IsInf(t, 0) || t <= 0 {
		return nil, fmt.Errorf("exporting inference model: temperature must be positive and finite, got %v", temperature)
	}
	// Every node costs a kernel dispatch in every run, which for a single
	// prediction is most of the time: the graph keeps as few as it can.
	b := onnxgraph.New("understudy_student", opset)
	n, l := onnxgraph.Sym("N"), onnxgraph.Sym("L")
	ids := b.Input(student.InputIDs, onnxgraph.Int64, n, l)

	// Padding (id 0) reads the zero row 0 and is left out of the mean.
	mask := b.Op("Cast", []string{b.Op("Greater", []string{ids, b.ConstInt64(0)})}, onnxgraph.AttrInt("to", int64(onnxgraph.Float)))
	axis1 := b.ConstInt64s(1)
	count := b.Op("Max", []string{
		b.Op("ReduceSum", []string{mask, axis1}, onnxgraph.AttrInt("keepdims", 1)),
		b.ConstFloat32(1),
	})

	e := append([]float32(nil), p.E...)
	clear(e[:cfg.Dim])
	for i, v := range e {
		if math.Abs(float64(v)) > maxFloat16 {
			return nil, fmt.Errorf("exporting inference model: embedding %d of row %d is %v, past float16's range", i%cfg.Dim, i/cfg.Dim, v)
		}
	}
	// E is 2^17×16 at the default size, most of a loaded session's memory:
	// 8.8 MB of RSS a session with E in float32, 4.5–5.5 MB in float16
	// (measured over 4 sessions). Only the rows of a prediction are cast.
	table := b.InitFloat16("E", []int64{int64(cfg.Buckets), int64(cfg.Dim)}, e)
	rows := b.Op("Cast", []string{
		b.Op("Gather", []string{table, ids}, onnxgraph.AttrInt("axis", 0)), // [N, L, Dim]
	}, onnxgraph.AttrInt("to", int64(onnxgraph.Float)))
	// The mean of the rows as one batched product, coef [N, 1, L] × rows:
	// ONNX Runtime's ReduceSum over the middle axis is a scalar loop, a
	// chain of dependent adds that took most of a prediction's time (20 of
	// 28 µs for 512 ids); MatMul runs on its vectorised GEMM.
	coef := b.Op("Unsqueeze", []string{b.Op("Div", []string{mask, count}), axis1})
	h := b.Op("Reshape", []string{
		b.Op("MatMul", []string{coef, rows}),
		b.ConstInt64s(-1, int64(cfg.Dim)),
	})
	if cfg.Hidden > 0 {
		w1 := b.InitFloat32("W1", []int64{int64(cfg.Dim), int64(cfg.Hidden)}, p.W1)
		b1 := b.InitFloat32("B1", []int64{int64(cfg.Hidden)}, p.B1)
		h = b.Op("Relu", []string{b.Op("Gemm", []string{h, w1, b1})})
	}
	w2 := b.InitFloat32("W2", []int64{int64(cfg.in()), int64(cfg.Classes)}, p.W2)
	b2 := b.InitFloat32("B2", []int64{int64(cfg.Classes)}, p.B2)
	// Gemm's alpha and beta divide the logits by the temperature.
	inv := float32(1 / t)
	scaled := b.Op("Gemm", []string{h, w2, b2}, onnxgraph.AttrFloat("alpha", inv), onnxgraph.AttrFloat("beta", inv))
	// A softmax over each softmax head, a sigmoid per tag; a plain
	// student's one softmax takes the whole row, in one node.
	segs := cfg.segments()
	activation := func(sg segment) (string, []onnxgraph.Attr) {
		if sg.sigmoid {
			return "Sigmoid", nil
		}
		return "Softmax", []onnxgraph.Attr{onnxgraph.AttrInt("axis", -1)}
	}
	if len(segs) == 1 {
		op, attrs := activation(segs[0])
		b.Node(op, []string{scaled}, []string{student.OutputProbs}, attrs...)
	} else {
		parts := make([]string, len(segs))
		for i, sg := range segs {
			x := b.Op("Slice", []string{scaled, b.ConstInt64s(int64(sg.start)), b.ConstInt64s(int64(sg.end)), axis1})
			op, attrs := activation(sg)
			parts[i] = b.Op(op, []string{x}, attrs...)
		}
		b.Node("Concat", parts, []string{student.OutputProbs}, onnxgraph.AttrInt("axis", 1))
	}

	c := onnxgraph.Fixed(cfg.Classes)
	b.Output(student.OutputProbs, onnxgraph.Float, n, c)
	b.Metadata("temperature", fmt.Sprint(temperature))
	b.Metadata(student.MetadataBuckets, strconv.Itoa(cfg.Buckets))
	raw, err := b.Model()
	if err != nil {
		return nil, fmt.Errorf("exporting inference model: %w", err)
	}
	return raw, nil
}
