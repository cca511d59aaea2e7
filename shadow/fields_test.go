package shadow

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

var norm = student.Normalizer{FoldCase: true, StripTrailingPeriod: true}

// TestSampleFields: a sample compares records field by field, and nothing
// else.
func TestSampleFields(t *testing.T) {
	teacher := norm.Label(`{"spam":true,"kind":"phish","meta":{"lang":"en"},"tags":["b","a"]}`)
	pred := func(answer string, conf float64, fields ...student.FieldPrediction) student.Prediction {
		return student.Prediction{Label: norm.Label(answer), Answer: answer, Confidence: conf, Fields: fields}
	}
	for _, tc := range []struct {
		name    string
		p       student.Prediction
		teacher string
		want    []FieldSample
	}{
		{"plain labels", pred("spam", 0.9), "spam", nil},
		{"plain teacher", pred(`{"a":1}`, 0.9), "spam", nil},
		{"the same record, keys in another order", pred(`{"tags":["a","b"],"meta":{"lang":"EN"},"kind":"Phish","spam":true}`, 0.9), teacher,
			[]FieldSample{{"kind", true, 0.9}, {"meta.lang", true, 0.9}, {"spam", true, 0.9}, {"tags", true, 0.9}}},
		{"one field differs", pred(`{"spam":true,"kind":"promo","meta":{"lang":"en"},"tags":["a","b"]}`, 0.8), teacher,
			[]FieldSample{{"kind", false, 0.8}, {"meta.lang", true, 0.8}, {"spam", true, 0.8}, {"tags", true, 0.8}}},
		{"a field missing, one more", pred(`{"spam":true,"kind":"phish","tags":["a","b"],"zzz":0}`, 0.7), teacher,
			[]FieldSample{{"kind", true, 0.7}, {"meta.lang", false, 0.7}, {"spam", true, 0.7}, {"tags", true, 0.7}, {"zzz", false, 0.7}}},
		{"a plain answer to a record", pred("phish", 0.6), teacher,
			[]FieldSample{{"kind", false, 0.6}, {"meta.lang", false, 0.6}, {"spam", false, 0.6}, {"tags", false, 0.6}}},
		{"heads' confidences", pred(`{"spam":true,"kind":"promo","meta":{"lang":"en"},"tags":["a","b"]}`, 0.5,
			student.FieldPrediction{Path: "kind", Value: `"promo"`, Confidence: 0.5}, student.FieldPrediction{Path: "spam", Value: "true", Confidence: 0.99}), teacher,
			[]FieldSample{{"kind", false, 0.5}, {"meta.lang", true, 0.5}, {"spam", true, 0.99}, {"tags", true, 0.5}}},
		// A key twice is no record: its answer is labelled as text.
		{"a teacher answer with a key twice", pred(`{"a":1}`, 0.9), norm.Label(`{"a":1,"a":2}`), nil},
		{"keys out of order", pred(`{"a":1}`, 0.9), `{"b":1,"a":1}`, nil},
		{"empty object", pred(`{"a":1}`, 0.9), `{}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := SampleOf(tc.p, tc.teacher, true)
			if !reflect.DeepEqual(s.Fields, tc.want) {
				t.Errorf("fields %+v\nwant   %+v", s.Fields, tc.want)
			}
			if s.Agree != (tc.p.Label == tc.teacher) {
				t.Errorf("whole-record agreement %v", s.Agree)
			}
		})
	}
}

// fieldSample is a uniform sample of a two-field record: kind agrees when
// kindAgrees, lang always; conf is both fields' confidence.
func fieldSample(kindAgrees bool, conf float64) Sample {
	return Sample{Confidence: conf, Agree: kindAgrees, Uniform: true, Teacher: "t", Student: "s",
		Fields: []FieldSample{{"kind", kindAgrees, conf}, {"lang", true, conf}}}
}

// TestFieldStats: a tracker counts each field's uniform samples, those
// confident at the τ in use, and those of them that agree; the gate's
// numbers are the whole record's, as before.
func TestFieldStats(t *testing.T) {
	tr := NewTracker(Gate{}, StartIndex(0.9))
	for i := range 100 {
		tr.Add(fieldSample(i%4 != 0, 0.95)) // kind agrees 3 times in 4
	}
	for range 50 {
		tr.Add(fieldSample(true, 0.5)) // not confident at 0.9
	}
	nu := fieldSample(false, 1)
	nu.Uniform = false
	tr.Add(nu) // a deferral: not counted
	st := tr.Stats()
	want := []FieldStats{
		{Path: "kind", Samples: 150, Confident: 100, Agree: 75, Agreement: 0.75, Coverage: 100.0 / 150},
		{Path: "lang", Samples: 150, Confident: 100, Agree: 100, Agreement: 1, Coverage: 100.0 / 150},
	}
	if !reflect.DeepEqual(st.Fields, want) {
		t.Errorf("fields %+v\nwant   %+v", st.Fields, want)
	}
	if st.Confident != 100 || st.ConfidentAgree != 75 {
		t.Errorf("whole records: %d of %d confident agree, want 75 of 100", st.ConfidentAgree, st.Confident)
	}
	if NewTracker(Gate{}, 0).Stats().Fields != nil {
		t.Error("a tracker without records lists fields")
	}
}

// TestFieldsBounded: past MaxFields paths, the rest pool under OtherField.
func TestFieldsBounded(t *testing.T) {
	tr := NewTracker(Gate{}, 0)
	for i := range MaxFields + 10 {
		tr.Add(Sample{Confidence: 1, Agree: true, Uniform: true,
			Fields: []FieldSample{{fmt.Sprintf("f%02d", i), true, 1}, {OtherField, false, 1}}})
	}
	fs := tr.Stats().Fields
	if len(fs) != MaxFields+1 || fs[len(fs)-1].Path != OtherField {
		t.Fatalf("%d fields, last %q; want %d named and %s last", len(fs), fs[len(fs)-1].Path, MaxFields, OtherField)
	}
	if o := fs[len(fs)-1]; o.Samples != MaxFields+10+10 || o.Agree != 10 {
		t.Errorf("pooled: %+v, want the 10 fields past the bound and every %q", o, OtherField)
	}
	for i, f := range fs[:MaxFields] {
		if want := fmt.Sprintf("f%02d", i); f.Path != want || f.Samples != 1 {
			t.Errorf("field %d: %+v, want %s once", i, f, want)
		}
	}
}

// TestFieldsSnapshot: the field counts are kept with the evidence; a
// snapshot taken before them restores with none; inconsistent ones are
// refused.
func TestFieldsSnapshot(t *testing.T) {
	a := NewTracker(Gate{}, 0)
	for i := range 300 {
		a.Add(fieldSample(i%5 != 0, 0.99))
	}
	for i := range MaxFields + 3 {
		a.Add(Sample{Confidence: 1, Uniform: true, Fields: []FieldSample{{fmt.Sprintf("x%d", i), true, 1}}})
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := RestoreTracker(Gate{}, snap)
	if err != nil {
		t.Fatal(err)
	}
	if sa, sb := a.Stats(), b.Stats(); !reflect.DeepEqual(sa.Fields, sb.Fields) || len(sa.Fields) != MaxFields+1 {
		t.Fatalf("restored fields differ:\n%+v\n%+v", sa.Fields, sb.Fields)
	}
	s := fieldSample(true, 1)
	s.Fields = append(s.Fields, FieldSample{"new", true, 1})
	a.Add(s)
	b.Add(s)
	if sa, sb := a.Stats(), b.Stats(); !reflect.DeepEqual(sa, sb) {
		t.Fatalf("after one more sample:\n%+v\n%+v", sa.Fields, sb.Fields)
	}
	if sa, _ := a.Snapshot(); string(sa) != string(mustSnapshot(t, b)) {
		t.Error("snapshots differ")
	}

	old, err := NewTracker(Gate{}, 0).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(old), `"fields"`) {
		t.Errorf("a tracker without fields writes them: %s", old)
	}
	if r, err := RestoreTracker(Gate{}, old); err != nil || r.Stats().Fields != nil {
		t.Errorf("a snapshot without fields: %v, %+v", err, r.Stats().Fields)
	}

	small := NewTracker(Gate{}, 0)
	small.Add(fieldSample(true, 1))
	good := string(mustSnapshot(t, small))
	for _, tc := range []struct{ name, old, new string }{
		{"agree above confident", `"path":"kind","samples":1,"confident":1,"agree":1`, `"path":"kind","samples":1,"confident":1,"agree":2`},
		{"confident above samples", `"path":"kind","samples":1,"confident":1`, `"path":"kind","samples":0,"confident":1`},
		{"a path twice", `"path":"lang"`, `"path":"kind"`},
		{"an empty path", `"path":"lang"`, `"path":""`},
		{"too many", `"fields":[`, `"fields":[` + strings.Repeat(`{"path":"p","samples":0,"confident":0,"agree":0},`, MaxFields+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(good, tc.old) {
				t.Fatalf("snapshot lacks %q: %s", tc.old, good)
			}
			if _, err := RestoreTracker(Gate{}, []byte(strings.Replace(good, tc.old, tc.new, 1))); !errors.Is(err, ErrInvalidSnapshot) {
				t.Errorf("err = %v, want ErrInvalidSnapshot", err)
			}
		})
	}
}

func mustSnapshot(t *testing.T, tr *Tracker) []byte {
	t.Helper()
	b, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
