package onnxgraph_test

import (
	"math"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
	"github.com/understudy-dev/understudy/internal/onnxgraph/onnxpb"
	"github.com/understudy-dev/understudy/student"
)

// affine builds y = softmax(x·W + b) with x float [N, 3] and an int64
// side output n = [number of rows], exercising every builder feature.
func affine(t *testing.T, opset int) []byte {
	t.Helper()
	b := onnxgraph.New("affine", opset)
	x := b.Input("x", onnxgraph.Float, onnxgraph.Sym("N"), onnxgraph.Fixed(3))
	w := b.InitFloat32("W", []int64{3, 2}, []float32{1, 0, 0, 1, 1, 1})
	bias := b.InitFloat32("B", []int64{2}, []float32{0.5, -0.5})
	logits := b.Op("Add", []string{b.Op("MatMul", []string{x, w}), bias})
	b.Node("Softmax", []string{logits}, []string{"y"}, onnxgraph.AttrInt("axis", -1))
	shape := b.Op("Shape", []string{x})
	rows := b.Op("Gather", []string{shape, b.ConstInt64s(0)}, onnxgraph.AttrInt("axis", 0))
	b.Node("Mul", []string{rows, b.ConstInt64(1)}, []string{"n"})
	b.Output("y", onnxgraph.Float, onnxgraph.Sym("N"), onnxgraph.Fixed(2))
	b.Output("n", onnxgraph.Int64, onnxgraph.Fixed(1))
	b.Metadata("purpose", "test")
	raw, err := b.Model()
	if err != nil {
		t.Fatalf("Model: %v", err)
	}
	return raw
}

func TestModelProtoFields(t *testing.T) {
	for _, tc := range []struct {
		opset int
		ir    int64
	}{{17, 8}, {18, 8}, {19, 9}, {20, 9}, {21, 10}} {
		var m onnxpb.ModelProto
		if err := proto.Unmarshal(affine(t, tc.opset), &m); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if m.GetIrVersion() != tc.ir || m.GetOpsetImport()[0].GetVersion() != int64(tc.opset) || m.GetOpsetImport()[0].GetDomain() != "" {
			t.Errorf("opset %d: ir %d opset %v", tc.opset, m.GetIrVersion(), m.GetOpsetImport())
		}
		g := m.GetGraph()
		if g.GetName() != "affine" || len(g.GetInput()) != 1 || len(g.GetOutput()) != 2 || len(g.GetInitializer()) != 4 {
			t.Fatalf("graph: %v", g)
		}
		dims := g.GetInput()[0].GetType().GetTensorType().GetShape().GetDim()
		if dims[0].GetDimParam() != "N" || dims[1].GetDimValue() != 3 {
			t.Errorf("input dims: %v", dims)
		}
		w := g.GetInitializer()[0]
		if w.GetName() != "W" || w.GetDataType() != int32(onnxpb.TensorProto_FLOAT) || len(w.GetRawData()) != 24 {
			t.Errorf("initializer W: %v", w)
		}
		if a := g.GetNode()[2].GetAttribute()[0]; a.GetName() != "axis" || a.GetType() != onnxpb.AttributeProto_INT || a.GetI() != -1 {
			t.Errorf("softmax attribute: %v", a)
		}
		if m.GetMetadataProps()[0].GetValue() != "test" {
			t.Errorf("metadata: %v", m.GetMetadataProps())
		}
	}
}

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *onnxgraph.Builder)
		want  string
	}{
		{"undefined input", func(b *onnxgraph.Builder) {
			b.Node("Relu", []string{"nope"}, []string{"y"})
		}, `input "nope" is not defined`},
		{"redefined value", func(b *onnxgraph.Builder) {
			x := b.Input("x", onnxgraph.Float, onnxgraph.Fixed(1))
			b.Node("Relu", []string{x}, []string{"x"})
		}, `"x": name already defined`},
		{"short initializer", func(b *onnxgraph.Builder) {
			b.InitFloat32("w", []int64{2, 2}, []float32{1, 2, 3})
		}, "needs 4 elements, got 3"},
		{"negative dimension", func(b *onnxgraph.Builder) {
			b.InitInt64("w", []int64{-1}, nil)
		}, "negative"},
		{"undefined output", func(b *onnxgraph.Builder) {
			b.Input("x", onnxgraph.Float)
			b.Output("y", onnxgraph.Float)
		}, `output "y" is never defined`},
		{"no outputs", func(b *onnxgraph.Builder) {
			b.Input("x", onnxgraph.Float)
		}, "no outputs"},
		{"node without outputs", func(b *onnxgraph.Builder) {
			x := b.Input("x", onnxgraph.Float)
			b.Node("Relu", []string{x}, nil)
		}, "no outputs"},
		{"bad tensor attribute", func(b *onnxgraph.Builder) {
			x := b.Input("x", onnxgraph.Int64, onnxgraph.Fixed(1))
			b.Node("ConstantOfShape", []string{x}, []string{"y"}, onnxgraph.AttrTensor("value", onnxgraph.Float32s([]int64{2}, []float32{0})))
		}, `attribute "value": shape [2] needs 2 elements, got 1`},
		{"zero attribute", func(b *onnxgraph.Builder) {
			x := b.Input("x", onnxgraph.Float)
			b.Node("Relu", []string{x}, []string{"y"}, onnxgraph.Attr{})
		}, "zero Attr"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := onnxgraph.New("bad", 18)
			tc.build(b)
			_, err := b.Model()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Model() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := onnxgraph.New("old", 11).Model(); err == nil || !strings.Contains(err.Error(), "opset 11") {
		t.Errorf("opset 11: error = %v", err)
	}
}

// TestRunsInONNXRuntime checks the serialized model with the real runtime:
// a wrong field number would make ORT reject or misread it.
func TestRunsInONNXRuntime(t *testing.T) {
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	for _, opset := range []int{17, 18, 20, 21} {
		sess, err := ort.NewDynamicAdvancedSessionWithONNXData(affine(t, opset), []string{"x"}, []string{"y", "n"}, nil)
		if err != nil {
			t.Fatalf("opset %d: loading model: %v", opset, err)
		}
		x, err := ort.NewTensor(ort.NewShape(2, 3), []float32{1, 2, 3, 0, 0, 0})
		if err != nil {
			t.Fatal(err)
		}
		outs := []ort.Value{nil, nil}
		if err := sess.Run([]ort.Value{x}, outs); err != nil {
			t.Fatalf("opset %d: run: %v", opset, err)
		}
		y := outs[0].(*ort.Tensor[float32]).GetData()
		n := outs[1].(*ort.Tensor[int64]).GetData()
		// Row 0: logits (1+3+0.5, 2+3-0.5) = (4.5, 4.5); row 1: (0.5, -0.5).
		want := []float64{0.5, 0.5, 1 / (1 + math.Exp(-1)), 1 / (1 + math.Exp(1))}
		for i := range want {
			if math.Abs(float64(y[i])-want[i]) > 1e-6 {
				t.Errorf("opset %d: y = %v, want %v", opset, y, want)
				break
			}
		}
		if n[0] != 2 {
			t.Errorf("opset %d: n = %v, want 2", opset, n)
		}
		for _, v := range append(outs, x) {
			_ = v.Destroy()
		}
		_ = sess.Destroy()
	}
}

// TestFloat16InONNXRuntime checks that ONNX Runtime reads a float16
// initializer's raw halves as ToFloat16 wrote them: rows gathered from the
// table and cast to float32 are FromFloat16 of the halves, bit for bit,
// subnormals and infinities included.
func TestFloat16InONNXRuntime(t *testing.T) {
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	data := []float32{
		0, 1, -2, 0.1,
		65504, 1e6, float32(math.Inf(-1)), float32(math.Copysign(0, -1)),
		float32(math.Ldexp(1, -24)), float32(math.Ldexp(1023.5, -24)), -1.0 / 3, float32(math.Ldexp(1, -14)),
	}
	b := onnxgraph.New("half", 18)
	idx := b.Input("i", onnxgraph.Int64, onnxgraph.Sym("N"))
	table := b.InitFloat16("E", []int64{3, 4}, data)
	rows := b.Op("Gather", []string{table, idx}, onnxgraph.AttrInt("axis", 0))
	b.Node("Cast", []string{rows}, []string{"y"}, onnxgraph.AttrInt("to", int64(onnxgraph.Float)))
	b.Output("y", onnxgraph.Float, onnxgraph.Sym("N"), onnxgraph.Fixed(4))
	raw, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if e := m.GetGraph().GetInitializer()[0]; e.GetDataType() != int32(onnxpb.TensorProto_FLOAT16) || len(e.GetRawData()) != 2*len(data) {
		t.Fatalf("initializer E: type %d, %d bytes", e.GetDataType(), len(e.GetRawData()))
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(raw, []string{"i"}, []string{"y"}, nil)
	if err != nil {
		t.Fatalf("loading model: %v", err)
	}
	defer sess.Destroy()
	in, err := ort.NewTensor(ort.NewShape(3), []int64{2, 0, 1})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := sess.Run([]ort.Value{in}, outs); err != nil {
		t.Fatalf("run: %v", err)
	}
	defer outs[0].Destroy()
	got := outs[0].(*ort.Tensor[float32]).GetData()
	for i, row := range []int{2, 0, 1} {
		for j := range 4 {
			want := onnxgraph.FromFloat16(onnxgraph.ToFloat16(data[row*4+j]))
			if g := got[i*4+j]; math.Float32bits(g) != math.Float32bits(want) {
				t.Errorf("row %d, column %d: %g (%#08x), want %g (%#08x)", row, j, g, math.Float32bits(g), want, math.Float32bits(want))
			}
		}
	}
}
