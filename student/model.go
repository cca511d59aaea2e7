package student

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Prediction is a student's answer to one input.
type Prediction struct {
	// Label is the predicted class; Answer its surface form, what the
	// student says.
	Label, Answer string
	// Confidence is the calibrated probability of Label.
	Confidence float64
	// Confident is Confidence >= the version's τ.
	Confident bool
	// Fields, for a structured answer, are its fields in the artifact's
	// Order; Label is then the record's label (Record.Label), Answer the
	// rendered record, and Confidence the least confident field's.
	Fields []FieldPrediction
}

// FieldPrediction is one field of a structured answer.
type FieldPrediction struct {
	// Path is the field's path; Value its normalized value as JSON (a tags
	// field: the JSON array of its tags).
	Path, Value string
	// Confidence is the field's confidence (see Head).
	Confidence float64
}

// Model is a loaded student version, ready to predict. It is safe for
// concurrent use.
type Model struct {
	// Artifact is the version's artifact without its ONNX bytes, which
	// the session holds: a copy in Go would stay live (8 MB a version at
	// the default size) for as long as the version is loaded.
	Artifact *Artifact
	feat     *Featurizer
	sess     *Session
	bufs     sync.Pool // *[]int64
	// record, for a structured answer's student, are its heads in the
	// artifact's Order; byPath their indices in record sorted by path, the
	// order of the record's label.
	record []recordHead
	byPath []int
}

// recordHead is one head of a structured answer's student as PredictBatch
// decodes it.
type recordHead struct {
	Head
	// classes are the head's classes, a tags head's sorted by label.
	classes []int
}

// Load prepares an artifact for serving. The ONNX Runtime must have been
// initialised (InitRuntime).
func Load(a *Artifact, threads int) (*Model, error) {
	feat, err := NewFeaturizer(a.Featurizer)
	if err != nil {
		return nil, fmt.Errorf("loading %s@v%d: %w", a.Domain, a.Version, err)
	}
	sess, err := NewSessionWithOptions(a.ONNX, SessionOptions{Threads: threads, RowWidth: a.Featurizer.MaxTokens})
	if err != nil {
		return nil, fmt.Errorf("loading %s@v%d: %w", a.Domain, a.Version, err)
	}
	if err := a.checkHeads(); err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("loading %s@v%d: %w", a.Domain, a.Version, err)
	}
	meta := *a
	meta.ONNX = nil
	m := &Model{Artifact: &meta, feat: feat, sess: sess}
	m.record, m.byPath = recordHeads(a)
	m.bufs.New = func() any { b := make([]int64, 0, a.Featurizer.MaxTokens); return &b }
	return m, nil
}

// Close frees the model's ONNX Runtime session.
func (m *Model) Close() error { return m.sess.Close() }

// Predict answers one input.
func (m *Model) Predict(text string) (Prediction, error) {
	ps, err := m.PredictBatch([]string{text})
	if err != nil {
		return Prediction{}, err
	}
	return ps[0], nil
}

// PredictBatch answers several inputs in one ONNX Runtime call.
func (m *Model) PredictBatch(texts []string) ([]Prediction, error) {
	if len(texts) == 0 {
		return nil, nil
	}
	bp := m.bufs.Get().(*[]int64)
	defer m.bufs.Put(bp)
	rows := make([][]int64, len(texts))
	width := 1
	flat := (*bp)[:0]
	for i, t := range texts {
		start := len(flat)
		flat = m.feat.Featurize(flat, t)
		rows[i] = flat[start:len(flat):len(flat)]
		width = max(width, len(rows[i]))
	}
	ids := flat
	if len(texts) > 1 {
		ids = make([]int64, len(texts)*width) // zero = padding
		for i, r := range rows {
			copy(ids[i*width:], r)
		}
	} else if len(flat) == 0 {
		ids = []int64{0} // an input without features: one padding id
	}
	*bp = flat
	probs, classes, err := m.sess.Run(ids, len(texts), width)
	if err != nil {
		return nil, fmt.Errorf("predicting with %s@v%d: %w", m.Artifact.Domain, m.Artifact.Version, err)
	}
	if classes != len(m.Artifact.Labels) {
		return nil, fmt.Errorf("predicting with %s@v%d: model has %d classes, artifact %d labels", m.Artifact.Domain, m.Artifact.Version, classes, len(m.Artifact.Labels))
	}
	out := make([]Prediction, len(texts))
	for i := range texts {
		row := probs[i*classes : (i+1)*classes]
		if m.record != nil {
			out[i] = m.decodeRecord(row)
			continue
		}
		best := 0
		for c := range row {
			if row[c] > row[best] {
				best = c
			}
		}
		conf := float64(row[best])
		out[i] = Prediction{Label: m.Artifact.Labels[best], Answer: m.Artifact.Surface[best], Confidence: conf, Confident: conf >= m.Artifact.Tau}
	}
	return out, nil
}

// recordHeads returns a checked artifact's heads in its Order, and sorted by
// path; nil for a plain answer's student.
func recordHeads(a *Artifact) (order []recordHead, byPath []int) {
	if len(a.Heads) == 0 {
		return nil, nil
	}
	for _, p := range a.Order {
		h := a.Heads[slices.IndexFunc(a.Heads, func(h Head) bool { return h.Path == p })]
		rh := recordHead{Head: h}
		for c := h.Start; c < h.End; c++ {
			rh.classes = append(rh.classes, c)
		}
		if h.Tags {
			slices.SortFunc(rh.classes, func(x, y int) int { return strings.Compare(a.Labels[x], a.Labels[y]) })
		}
		order = append(order, rh)
	}
	byPath = make([]int, len(order))
	for i := range byPath {
		byPath[i] = i
	}
	slices.SortFunc(byPath, func(x, y int) int { return strings.Compare(order[x].Path, order[y].Path) })
	return order, byPath
}

// decodeRecord reads a structured answer's probabilities as its heads'
// answers (see Head): the fields in Order, the record's label as
// Record.Label writes it (paths sorted, a tags field as the sorted JSON
// array of its tags), the answer rendered in Order from the surface forms,
// and the least confident head's confidence.
func (m *Model) decodeRecord(row []float32) Prediction {
	a := m.Artifact
	p := Prediction{Confidence: 1, Fields: make([]FieldPrediction, len(m.record))}
	surfaces := make([]string, len(m.record))
	for i, h := range m.record {
		f := FieldPrediction{Path: h.Path, Confidence: 1}
		if h.Tags {
			var vals, surf []string
			for _, c := range h.classes {
				pc := float64(row[c])
				if pc >= 0.5 {
					vals, surf = append(vals, a.Labels[c]), append(surf, a.Surface[c])
				}
				f.Confidence = min(f.Confidence, max(pc, 1-pc))
			}
			f.Value = "[" + strings.Join(vals, ",") + "]"
			surfaces[i] = "[" + strings.Join(surf, ",") + "]"
		} else {
			best := h.Start
			for c := h.Start; c < h.End; c++ {
				if row[c] > row[best] {
					best = c
				}
			}
			f.Value, f.Confidence, surfaces[i] = a.Labels[best], float64(row[best]), a.Surface[best]
		}
		p.Fields[i] = f
		p.Confidence = min(p.Confidence, f.Confidence)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, at := range m.byPath {
		if i > 0 {
			b.WriteByte(',')
		}
		f := p.Fields[at]
		b.WriteString(quote(f.Path))
		b.WriteByte(':')
		b.WriteString(f.Value)
	}
	b.WriteByte('}')
	p.Label, p.Answer = b.String(), RenderRecord(a.Order, surfaces)
	p.Confident = p.Confidence >= a.Tau
	return p
}
