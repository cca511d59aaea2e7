// Package onnxgraph builds ONNX models in Go: graph inputs and outputs with
// symbolic or fixed shapes, initializers from Go slices (float32 data may be
// stored as float16, rounded by ToFloat16), operator nodes with
// typed attributes, and the serialized ModelProto that ONNX Runtime loads.
// It owns no operator semantics; callers name standard ONNX operators
// (default domain) and the builder checks only that the graph is well formed.
package onnxgraph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/understudy-dev/understudy/internal/onnxgraph/onnxpb"
)

// Opset bounds the builder accepts. Each opset maps to the lowest IR version
// that carries it (opsets 17 and 18: IR 8; 19 and 20: IR 9; 21 and 22: IR 10),
// all of which ONNX Runtime 1.30 loads.
const (
	MinOpset = 17
	MaxOpset = 22
)

// Producer is written into every model's producer_name.
const Producer = "understudy"

// DataType is a tensor element type, numbered as ONNX's TensorProto.DataType.
type DataType int32

// Element types used by Understudy's graphs.
const (
	Float   DataType = DataType(onnxpb.TensorProto_FLOAT)
	Float16 DataType = DataType(onnxpb.TensorProto_FLOAT16)
	Int32   DataType = DataType(onnxpb.TensorProto_INT32)
	Int64   DataType = DataType(onnxpb.TensorProto_INT64)
	Bool    DataType = DataType(onnxpb.TensorProto_BOOL)
)

func (t DataType) String() string {
	if name, ok := onnxpb.TensorProto_DataType_name[int32(t)]; ok {
		return name
	}
	return "DataType(" + strconv.Itoa(int(t)) + ")"
}

// Dim is one dimension of a graph input or output: a fixed size, or a
// symbolic name (Param) that ONNX Runtime binds at run time.
type Dim struct {
	Size  int64
	Param string
}

// Fixed is a dimension of size n.
func Fixed(n int) Dim { return Dim{Size: int64(n)} }

// Sym is a symbolic dimension named name; dimensions with the same name must
// agree at run time.
func Sym(name string) Dim { return Dim{Param: name} }

// Attr is a node attribute; build one with AttrInt, AttrFloat, AttrString,
// AttrInts, AttrFloats or AttrTensor.
type Attr struct {
	p   *onnxpb.AttributeProto
	err error
}

// AttrInt is an INT attribute.
func AttrInt(name string, v int64) Attr {
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_INT), I: proto.Int64(v)}}
}

// AttrFloat is a FLOAT attribute.
func AttrFloat(name string, v float32) Attr {
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_FLOAT), F: proto.Float32(v)}}
}

// AttrString is a STRING attribute.
func AttrString(name, v string) Attr {
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_STRING), S: []byte(v)}}
}

// AttrInts is an INTS attribute.
func AttrInts(name string, v ...int64) Attr {
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_INTS), Ints: append([]int64(nil), v...)}}
}

// AttrFloats is a FLOATS attribute.
func AttrFloats(name string, v ...float32) Attr {
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_FLOATS), Floats: append([]float32(nil), v...)}}
}

// AttrTensor is a TENSOR attribute holding t (as ConstantOfShape's value).
func AttrTensor(name string, t Tensor) Attr {
	if err := t.check(); err != nil {
		return Attr{err: fmt.Errorf("attribute %q: %w", name, err)}
	}
	return Attr{p: &onnxpb.AttributeProto{Name: proto.String(name), Type: attrType(onnxpb.AttributeProto_TENSOR), T: t.proto("")}}
}

func attrType(t onnxpb.AttributeProto_AttributeType) *onnxpb.AttributeProto_AttributeType {
	return &t
}

// Tensor is a constant tensor value: float32, float16 or int64 data with
// its shape (an empty Dims is a scalar). Build one with Float32s,
// Float16s, Int64s, ScalarFloat32 or ScalarInt64.
type Tensor struct {
	Dims  []int64
	Type  DataType
	f32   []float32
	f16   []uint16
	i64   []int64
	count int
}

// Float32s is a float32 tensor of shape dims holding a copy of data.
func Float32s(dims []int64, data []float32) Tensor {
	return Tensor{Dims: append([]int64{}, dims...), Type: Float, f32: append([]float32(nil), data...), count: len(data)}
}

// Float16s is a float16 tensor of shape dims holding data rounded to
// float16 by ToFloat16: half the bytes of Float32s, with a relative error
// up to 2^-11 in half's normal range.
func Float16s(dims []int64, data []float32) Tensor {
	f16 := make([]uint16, len(data))
	for i, v := range data {
		f16[i] = ToFloat16(v)
	}
	return Tensor{Dims: append([]int64{}, dims...), Type: Float16, f16: f16, count: len(data)}
}

// Int64s is an int64 tensor of shape dims holding a copy of data.
func Int64s(dims []int64, data []int64) Tensor {
	return Tensor{Dims: append([]int64{}, dims...), Type: Int64, i64: append([]int64(nil), data...), count: len(data)}
}

// ScalarFloat32 is a float32 scalar.
func ScalarFloat32(v float32) Tensor { return Float32s(nil, []float32{v}) }

// ScalarInt64 is an int64 scalar.
func ScalarInt64(v int64) Tensor { return Int64s(nil, []int64{v}) }

// check reports whether t's data fills its shape exactly.
func (t Tensor) check() error {
	n := int64(1)
	for i, d := range t.Dims {
		if d < 0 {
			return fmt.Errorf("dimension %d is negative (%d)", i, d)
		}
		if d > 0 && n > math.MaxInt32/d {
			return fmt.Errorf("shape %v is too large", t.Dims)
		}
		n *= d
	}
	if int64(t.count) != n {
		return fmt.Errorf("shape %v needs %d elements, got %d", t.Dims, n, t.count)
	}
	return nil
}

// proto encodes t as a TensorProto with little-endian raw_data.
func (t Tensor) proto(name string) *onnxpb.TensorProto {
	tp := &onnxpb.TensorProto{Dims: append([]int64{}, t.Dims...), DataType: proto.Int32(int32(t.Type))}
	if name != "" {
		tp.Name = proto.String(name)
	}
	switch t.Type {
	case Float:
		raw := make([]byte, 0, 4*len(t.f32))
		for _, v := range t.f32 {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
		tp.RawData = raw
	case Float16:
		raw := make([]byte, 0, 2*len(t.f16))
		for _, v := range t.f16 {
			raw = binary.LittleEndian.AppendUint16(raw, v)
		}
		tp.RawData = raw
	case Int64:
		raw := make([]byte, 0, 8*len(t.i64))
		for _, v := range t.i64 {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
		tp.RawData = raw
	}
	return tp
}

// Builder assembles one graph. Its methods record the first error they meet
// and later calls do nothing; Model and Err report it. A Builder is not safe
// for concurrent use.
type Builder struct {
	opset   int
	graph   *onnxpb.GraphProto
	meta    []*onnxpb.StringStringEntryProto
	defined map[string]bool
	outputs map[string]bool
	seq     int
	err     error
}

// New starts a graph called name for the given default-domain opset
// (MinOpset..MaxOpset).
func New(name string, opset int) *Builder {
	b := &Builder{
		opset:   opset,
		graph:   &onnxpb.GraphProto{Name: proto.String(name)},
		defined: make(map[string]bool),
		outputs: make(map[string]bool),
	}
	if opset < MinOpset || opset > MaxOpset {
		b.fail(fmt.Errorf("opset %d: must be in [%d, %d]", opset, MinOpset, MaxOpset))
	}
	return b
}

// Err returns the first error the builder recorded, or nil.
func (b *Builder) Err() error { return b.err }

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// define records that a value called name now exists.
func (b *Builder) define(name, what string) bool {
	switch {
	case b.err != nil:
		return false
	case name == "":
		b.fail(fmt.Errorf("defining %s: empty value name", what))
		return false
	case b.defined[name]:
		b.fail(fmt.Errorf("defining %s %q: name already defined", what, name))
		return false
	}
	b.defined[name] = true
	return true
}

// Fresh returns a value name starting with prefix that no other Fresh call
// on this builder returns. Names given explicitly must not end in "#<n>".
func (b *Builder) Fresh(prefix string) string {
	b.seq++
	return prefix + "#" + strconv.Itoa(b.seq)
}

// Input declares a graph input and returns its name.
func (b *Builder) Input(name string, t DataType, dims ...Dim) string {
	if b.define(name, "input") {
		b.graph.Input = append(b.graph.Input, valueInfo(name, t, dims))
	}
	return name
}

// Output declares that the value called name, defined by the time Model is
// called, is a graph output of the given type and shape.
func (b *Builder) Output(name string, t DataType, dims ...Dim) {
	if b.err != nil {
		return
	}
	if b.outputs[name] {
		b.fail(fmt.Errorf("declaring output %q: already an output", name))
		return
	}
	b.outputs[name] = true
	b.graph.Output = append(b.graph.Output, valueInfo(name, t, dims))
}

func valueInfo(name string, t DataType, dims []Dim) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d.Param != "" {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Size}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(t)),
			Shape:    shape,
		}}},
	}
}

// Initializer adds a constant tensor called name to the graph and returns
// the name.
func (b *Builder) Initializer(name string, t Tensor) string {
	if err := t.check(); err != nil {
		b.fail(fmt.Errorf("adding initializer %q: %w", name, err))
		return name
	}
	if b.define(name, "initializer") {
		b.graph.Initializer = append(b.graph.Initializer, t.proto(name))
	}
	return name
}

// InitFloat32 adds a float32 initializer of shape dims holding a copy of
// data, and returns its name.
func (b *Builder) InitFloat32(name string, dims []int64, data []float32) string {
	return b.Initializer(name, Float32s(dims, data))
}

// InitFloat16 adds a float16 initializer of shape dims holding data rounded
// to float16 (Float16s), and returns its name.
func (b *Builder) InitFloat16(name string, dims []int64, data []float32) string {
	return b.Initializer(name, Float16s(dims, data))
}

// InitInt64 adds an int64 initializer of shape dims holding a copy of data,
// and returns its name.
func (b *Builder) InitInt64(name string, dims []int64, data []int64) string {
	return b.Initializer(name, Int64s(dims, data))
}

// Const adds t as an initializer under a fresh name and returns the name.
func (b *Builder) Const(t Tensor) string {
	return b.Initializer(b.Fresh("const"), t)
}

// ConstFloat32 is a float32 scalar constant.
func (b *Builder) ConstFloat32(v float32) string { return b.Const(ScalarFloat32(v)) }

// ConstInt64 is an int64 scalar constant.
func (b *Builder) ConstInt64(v int64) string { return b.Const(ScalarInt64(v)) }

// ConstInt64s is a 1-D int64 constant (axes, shapes).
func (b *Builder) ConstInt64s(v ...int64) string {
	return b.Const(Int64s([]int64{int64(len(v))}, v))
}

// Node appends an operator node of the default domain. Every non-empty
// input must already be defined (graph input, initializer or an earlier
// node's output); an empty input name marks an omitted optional input.
func (b *Builder) Node(op string, in, out []string, attrs ...Attr) {
	if b.err != nil {
		return
	}
	for _, name := range in {
		if name != "" && !b.defined[name] {
			b.fail(fmt.Errorf("adding %s node: input %q is not defined", op, name))
			return
		}
	}
	if len(out) == 0 {
		b.fail(fmt.Errorf("adding %s node: no outputs", op))
		return
	}
	for _, name := range out {
		if !b.define(name, op+" output") {
			return
		}
	}
	n := &onnxpb.NodeProto{
		OpType: proto.String(op),
		Name:   proto.String(fmt.Sprintf("%s_%d", op, len(b.graph.Node))),
		Input:  append([]string(nil), in...),
		Output: append([]string(nil), out...),
	}
	for _, a := range attrs {
		if a.err != nil {
			b.fail(fmt.Errorf("adding %s node: %w", op, a.err))
			return
		}
		if a.p == nil {
			b.fail(fmt.Errorf("adding %s node: zero Attr", op))
			return
		}
		n.Attribute = append(n.Attribute, a.p)
	}
	b.graph.Node = append(b.graph.Node, n)
}

// Op appends a node with one output under a fresh name and returns that
// name, for writing expressions: b.Op("Add", b.Op("Mul", x, y), z).
func (b *Builder) Op(op string, in []string, attrs ...Attr) string {
	out := b.Fresh(op)
	b.Node(op, in, []string{out}, attrs...)
	return out
}

// Metadata adds a key/value pair to the model's metadata_props, readable
// through ONNX Runtime's model metadata.
func (b *Builder) Metadata(key, value string) {
	b.meta = append(b.meta, &onnxpb.StringStringEntryProto{Key: proto.String(key), Value: proto.String(value)})
}

// ErrNoOutputs is returned by Model for a graph without outputs.
var ErrNoOutputs = errors.New("graph has no outputs")

// Model checks the graph and returns the serialized ModelProto.
func (b *Builder) Model() ([]byte, error) {
	if b.err != nil {
		return nil, fmt.Errorf("building graph %q: %w", b.graph.GetName(), b.err)
	}
	if len(b.graph.Output) == 0 {
		return nil, fmt.Errorf("building graph %q: %w", b.graph.GetName(), ErrNoOutputs)
	}
	for _, o := range b.graph.Output {
		if !b.defined[o.GetName()] {
			return nil, fmt.Errorf("building graph %q: output %q is never defined", b.graph.GetName(), o.GetName())
		}
	}
	m := &onnxpb.ModelProto{
		IrVersion:     proto.Int64(irVersion(b.opset)),
		ProducerName:  proto.String(Producer),
		OpsetImport:   []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(int64(b.opset))}},
		Graph:         b.graph,
		MetadataProps: b.meta,
	}
	raw, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("serializing graph %q: %w", b.graph.GetName(), err)
	}
	return raw, nil
}

// irVersion is the lowest IR version that carries opset.
func irVersion(opset int) int64 {
	switch {
	case opset <= 18:
		return 8
	case opset <= 20:
		return 9
	default:
		return 10
	}
}
