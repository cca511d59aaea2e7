package shadow

// Agreement per field. When the teacher's answer is a record (a JSON
// object: student.Record), a sample also says, field by field, whether the
// student gave the teacher's value and how confident it was in that field.
// The gate never reads these counts: a student serves on whole records,
// and Sample.Agree (label equality) is agreement on every field. They
// tell an operator which field holds a student back: the one that
// disagrees most, or whose confidence keeps the record below τ.

import (
	"slices"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/understudy-dev/understudy/student"
)

// MaxFields is how many fields of a domain's records a tracker counts by
// path, the first it sees; the fields it meets after those are pooled
// under OtherField (a path that is "_other" itself too), so a teacher
// inventing keys cannot grow a tracker, its snapshot or the metrics
// without bound.
const MaxFields = 32

// OtherField names the fields pooled past MaxFields.
const OtherField = "_other"

// FieldSample is one field of a sample whose teacher answer is a record.
type FieldSample struct {
	// Path is the field's path in the record ("meta.lang").
	Path string
	// Agree: the student's value of the field is the teacher's; a field
	// one of the two records lacks disagrees.
	Agree bool
	// Confidence is the student's confidence in the field: its head's
	// (student.FieldPrediction), or the whole answer's for a student
	// without heads.
	Confidence float64
}

// FieldStats are the counts of one field over a version's uniform
// samples.
type FieldStats struct {
	Path string `json:"path"`
	// Samples counts the uniform samples that had the field (in the
	// teacher's or the student's record); pooled fields count once each.
	Samples int64 `json:"samples"`
	// Confident counts those whose field confidence reached the τ in use
	// when they came, Agree those of them whose value was the teacher's.
	Confident int64 `json:"confident"`
	Agree     int64 `json:"agree"`
	// Agreement is Agree/Confident and Coverage Confident/Samples; 0
	// when undefined.
	Agreement float64 `json:"agreement"`
	Coverage  float64 `json:"coverage"`
}

// fieldSamples compares a prediction with the teacher's label field by
// field: nil unless the teacher's label is a record's.
func fieldSamples(p student.Prediction, teacher string) []FieldSample {
	tp, tv, ok := recordLabel(teacher)
	if !ok {
		return nil
	}
	var sp, sv []string
	if p.Label == teacher {
		sp, sv = tp, tv
	} else {
		sp, sv, _ = recordLabel(p.Label)
	}
	conf := func(path string) float64 {
		for _, f := range p.Fields {
			if f.Path == path {
				return f.Confidence
			}
		}
		return p.Confidence
	}
	// Both path lists are sorted: merge them.
	out := make([]FieldSample, 0, max(len(tp), len(sp)))
	i, j := 0, 0
	for i < len(tp) || j < len(sp) {
		switch {
		case j == len(sp) || i < len(tp) && tp[i] < sp[j]:
			out = append(out, FieldSample{Path: tp[i], Confidence: conf(tp[i])})
			i++
		case i == len(tp) || sp[j] < tp[i]:
			out = append(out, FieldSample{Path: sp[j], Confidence: conf(sp[j])})
			j++
		default:
			out = append(out, FieldSample{Path: tp[i], Agree: tv[i] == sv[j], Confidence: conf(tp[i])})
			i, j = i+1, j+1
		}
	}
	return out
}

// recordLabel reads a record's label (student.Record.Label: one object of
// path → normalized value, keys sorted) into its paths and their values
// as JSON. ok is false for any other label, a plain answer's "{…}" that is
// not in that form among them (keys out of order, or twice).
func recordLabel(label string) (paths, values []string, ok bool) {
	if !strings.HasPrefix(label, "{") {
		return nil, nil, false
	}
	var p fastjson.Parser
	v, err := p.Parse(label)
	if err != nil {
		return nil, nil, false
	}
	o, err := v.Object()
	if err != nil || o.Len() == 0 {
		return nil, nil, false
	}
	ok = true
	o.Visit(func(k []byte, e *fastjson.Value) {
		if !ok {
			return
		}
		if n := len(paths); n > 0 && paths[n-1] >= string(k) {
			ok = false
			return
		}
		paths = append(paths, string(k))
		values = append(values, string(e.MarshalTo(nil)))
	})
	return paths, values, ok
}

// fieldCount is a tracker's counts of one field.
type fieldCount struct {
	path                      string
	samples, confident, agree int64
}

// countFields adds a uniform sample's fields at the τ in use. t.mu must be
// held.
func (t *Tracker) countFields(fs []FieldSample, tau float64) {
	for _, f := range fs {
		c := t.field(f.Path)
		c.samples++
		if f.Confidence >= tau {
			c.confident++
			if f.Agree {
				c.agree++
			}
		}
	}
}

// field returns the counts of a path: its own while there is room,
// OtherField's after. t.mu must be held.
func (t *Tracker) field(path string) *fieldCount {
	if i, ok := t.fieldIx[path]; ok {
		return &t.fields[i]
	}
	named := len(t.fields)
	if _, ok := t.fieldIx[OtherField]; ok {
		named--
	}
	if named >= MaxFields || path == OtherField {
		path = OtherField
		if i, ok := t.fieldIx[path]; ok {
			return &t.fields[i]
		}
	}
	if t.fieldIx == nil {
		t.fieldIx = map[string]int{}
	}
	// The path may share memory with a request; keep a copy.
	t.fieldIx[strings.Clone(path)] = len(t.fields)
	t.fields = append(t.fields, fieldCount{path: strings.Clone(path)})
	return &t.fields[len(t.fields)-1]
}

// fieldStats lists the fields' counts by path, OtherField last; nil when
// there are none. t.mu must be held.
func (t *Tracker) fieldStats() []FieldStats {
	if len(t.fields) == 0 {
		return nil
	}
	out := make([]FieldStats, 0, len(t.fields))
	for _, c := range t.fields {
		out = append(out, FieldStats{Path: c.path, Samples: c.samples, Confident: c.confident, Agree: c.agree,
			Agreement: ratio(c.agree, c.confident), Coverage: ratio(c.confident, c.samples)})
	}
	slices.SortFunc(out, func(a, b FieldStats) int {
		switch {
		case a.Path == OtherField:
			return 1
		case b.Path == OtherField:
			return -1
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out
}
