package student

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/internal/onnxgraph"
)

// constModel is a model whose probabilities are row for every input.
func constModel(t *testing.T, row []float32) []byte {
	t.Helper()
	b := onnxgraph.New("const", 18)
	n := onnxgraph.Sym("N")
	ids := b.Input(InputIDs, onnxgraph.Int64, n, onnxgraph.Sym("L"))
	zero := b.Op("Mul", []string{
		b.Op("Cast", []string{b.Op("ReduceSum", []string{ids, b.ConstInt64s(1)}, onnxgraph.AttrInt("keepdims", 1))}, onnxgraph.AttrInt("to", int64(onnxgraph.Float))),
		b.ConstFloat32(0),
	}) // [N, 1]
	b.Node("Add", []string{zero, b.Const(onnxgraph.Float32s([]int64{1, int64(len(row))}, row))}, []string{OutputProbs})
	b.Output(OutputProbs, onnxgraph.Float, n, onnxgraph.Fixed(len(row)))
	raw, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// recordArtifact is a structured answer's student: a softmax head "kind",
// a softmax head "spam", a tags head "meta.tags" whose tags are not stored
// sorted, and a one-class head "meta.lang"; it renders "spam" first.
func recordArtifact() *Artifact {
	return &Artifact{
		Domain: "triage", Version: 3, CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Labels:  []string{`"spam"`, `"easy_ham"`, `"hard_ham"`, `true`, `false`, `"c"`, `"a"`, `"b"`, `"en"`},
		Surface: []string{`"Spam"`, `"easy_ham"`, `"HARD_HAM"`, `true`, `false`, `"C"`, `"A"`, `"b"`, `"EN"`},
		Heads: []Head{
			{Path: "kind", Start: 0, End: 3},
			{Path: "spam", Start: 3, End: 5},
			{Path: "meta.tags", Tags: true, Start: 5, End: 8},
			{Path: "meta.lang", Start: 8, End: 9},
		},
		Order:      []string{"spam", "kind", "meta.lang", "meta.tags"},
		Featurizer: DefaultFeaturizer(),
		Tau:        0.65, Temperature: 1.3,
		Metrics: Metrics{Labels: 9, HoldoutAccuracy: 0.97},
	}
}

// TestPredictRecord decodes a structured answer's probabilities: each
// head's answer and confidence, the record's confidence (its least
// confident head's), its label as Normalizer.Label reads the rendered
// answer, and the answer in the artifact's key order.
func TestPredictRecord(t *testing.T) {
	n := Normalizer{FoldCase: true, StripTrailingPeriod: true}
	for _, tc := range []struct {
		name      string
		row       []float32
		label     string
		answer    string
		fields    []FieldPrediction
		conf      float64
		confident bool
	}{
		{
			name:   "tags a and c, the least sure decides",
			row:    []float32{0.1, 0.7, 0.2, 0.2, 0.8, 0.6, 0.9, 0.3, 1},
			label:  `{"kind":"easy_ham","meta.lang":"en","meta.tags":["a","c"],"spam":false}`,
			answer: `{"spam":false,"kind":"easy_ham","meta":{"lang":"EN","tags":["A","C"]}}`,
			fields: []FieldPrediction{
				{Path: "spam", Value: "false", Confidence: 0.8},
				{Path: "kind", Value: `"easy_ham"`, Confidence: 0.7},
				{Path: "meta.lang", Value: `"en"`, Confidence: 1},
				{Path: "meta.tags", Value: `["a","c"]`, Confidence: 0.6},
			},
			conf: 0.6,
		},
		{
			name:   "no tags, sure of it",
			row:    []float32{0.95, 0.03, 0.02, 0.99, 0.01, 0.1, 0.02, 0.2, 1},
			label:  `{"kind":"spam","meta.lang":"en","meta.tags":[],"spam":true}`,
			answer: `{"spam":true,"kind":"Spam","meta":{"lang":"EN","tags":[]}}`,
			fields: []FieldPrediction{
				{Path: "spam", Value: "true", Confidence: 0.99},
				{Path: "kind", Value: `"spam"`, Confidence: 0.95},
				{Path: "meta.lang", Value: `"en"`, Confidence: 1},
				{Path: "meta.tags", Value: `[]`, Confidence: 0.8},
			},
			conf: 0.8, confident: true,
		},
		{
			name:   "a tag at one half is in",
			row:    []float32{0.05, 0.05, 0.9, 0.1, 0.9, 0.01, 0.5, 0.99, 1},
			label:  `{"kind":"hard_ham","meta.lang":"en","meta.tags":["a","b"],"spam":false}`,
			answer: `{"spam":false,"kind":"HARD_HAM","meta":{"lang":"EN","tags":["A","b"]}}`,
			fields: []FieldPrediction{
				{Path: "spam", Value: "false", Confidence: 0.9},
				{Path: "kind", Value: `"hard_ham"`, Confidence: 0.9},
				{Path: "meta.lang", Value: `"en"`, Confidence: 1},
				{Path: "meta.tags", Value: `["a","b"]`, Confidence: 0.5},
			},
			conf: 0.5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := recordArtifact()
			a.ONNX = constModel(t, tc.row)
			m, err := Load(a, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			preds, err := m.PredictBatch([]string{"first input", "a second, longer input"})
			if err != nil {
				t.Fatal(err)
			}
			one, err := m.Predict("alone")
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range append(preds, one) {
				if p.Label != tc.label || p.Answer != tc.answer {
					t.Errorf("label %s answer %s, want %s and %s", p.Label, p.Answer, tc.label, tc.answer)
				}
				if !json.Valid([]byte(p.Answer)) || n.Label(p.Answer) != p.Label {
					t.Errorf("answer %s labels as %s, the prediction says %s", p.Answer, n.Label(p.Answer), p.Label)
				}
				if len(p.Fields) != len(tc.fields) {
					t.Fatalf("fields %+v, want %+v", p.Fields, tc.fields)
				}
				for i, f := range p.Fields {
					w := tc.fields[i]
					if f.Path != w.Path || f.Value != w.Value || !near(f.Confidence, w.Confidence) {
						t.Errorf("field %d = %+v, want %+v", i, f, w)
					}
				}
				if !near(p.Confidence, tc.conf) || p.Confident != tc.confident {
					t.Errorf("confidence %v (confident %v), want %v (%v)", p.Confidence, p.Confident, tc.conf, tc.confident)
				}
			}
		})
	}
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

// TestArtifactHeadsRoundTrip: a structured answer's artifact reads back as
// it was written, and one whose heads do not cover its labels, or whose key
// order does not name its heads, is refused.
func TestArtifactHeadsRoundTrip(t *testing.T) {
	a := recordArtifact()
	a.ONNX = []byte("onnx bytes")
	raw, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalArtifact(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, a) {
		t.Errorf("read back %+v, wrote %+v", back, a)
	}
	for _, tc := range []struct {
		name  string
		spoil func(a *Artifact)
		want  string
	}{
		{"a gap between heads", func(a *Artifact) { a.Heads[1].Start = 4 }, `head 1 ("spam") spans [4, 5)`},
		{"heads overlap", func(a *Artifact) { a.Heads[1].Start = 2 }, `head 1 ("spam") spans [2, 5)`},
		{"heads short of the labels", func(a *Artifact) { a.Heads = a.Heads[:3]; a.Order = a.Order[:3] }, "heads cover 8 of 9 labels"},
		{"a head past the labels", func(a *Artifact) { a.Heads[3].End = 10 }, "within 9 labels"},
		{"an empty softmax head", func(a *Artifact) {
			a.Heads = append(a.Heads[:1], Head{Path: "x", Start: 3, End: 3}, a.Heads[1], a.Heads[2], a.Heads[3])
			a.Order = append(a.Order, "x")
		}, `softmax head 1 ("x") has no label`},
		{"two heads of one path", func(a *Artifact) { a.Heads[1].Path = "kind" }, `two heads for path "kind"`},
		{"order misses a head", func(a *Artifact) { a.Order = a.Order[:3] }, "key order of 3 paths for 4 heads"},
		{"order names another path", func(a *Artifact) { a.Order[0] = "other" }, `key order names "other"`},
		{"order repeats a path", func(a *Artifact) { a.Order[0] = "kind" }, `key order names "kind"`},
		{"order without heads", func(a *Artifact) { a.Heads = nil }, "a key order of 4 paths without heads"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := recordArtifact()
			tc.spoil(a)
			raw, err := a.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := UnmarshalArtifact(raw); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}
