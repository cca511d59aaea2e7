package student

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Metrics are a trained version's measurements on its holdout set.
type Metrics struct {
	Labels                  int     `json:"labels"`
	TrainPairs              int     `json:"train_pairs"`
	HoldoutPairs            int     `json:"holdout_pairs"`
	HoldoutAccuracy         float64 `json:"holdout_accuracy"`
	Tau                     float64 `json:"tau"`
	CoverageAtTau           float64 `json:"coverage_at_tau"`
	SelectiveAgreementAtTau float64 `json:"selective_agreement_at_tau"`
	Temperature             float64 `json:"temperature"`
	Epochs                  int     `json:"epochs"`
	TrainSeconds            float64 `json:"train_seconds"`
	ExamplesPerSecond       float64 `json:"examples_per_second"`
	ModelBytes              int     `json:"model_bytes"`
}

// Artifact is one trained version of a domain's student: everything
// serving needs, and how it was made.
type Artifact struct {
	Domain    string    `json:"domain"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Labels are the classes, in the model's output order; Surface[i] is
	// the answer the student gives for Labels[i] (the label's most frequent
	// raw teacher answer).
	Labels  []string `json:"labels"`
	Surface []string `json:"surface"`
	// Heads, for a structured answer, split Labels into one head per
	// field (a record, see record.go); Order is the teacher's key order,
	// the paths the student renders its record in. Both are empty for a
	// plain answer: one softmax over all of Labels.
	Heads      []Head           `json:"heads,omitempty"`
	Order      []string         `json:"order,omitempty"`
	Featurizer FeaturizerConfig `json:"featurizer"`
	// Tau is the confidence threshold chosen on the holdout set: below it
	// the student defers until the gate has certified a threshold of its
	// own from live and back-tested evidence.
	Tau float64 `json:"tau"`
	// StartTau is the first threshold the gate tests (see the shadow
	// package); 0 in versions made before it existed: the top of the grid.
	StartTau float64 `json:"start_tau,omitempty"`
	// Temperature divides the logits before the softmax (calibration); the
	// ONNX graph applies it.
	Temperature float64 `json:"temperature"`
	Metrics     Metrics `json:"metrics"`
	// Pairs is how many logged pairs the version was trained from.
	Pairs  int    `json:"pairs"`
	Device string `json:"device"`
	// ONNX is the inference graph: input "ids" int64 [N, L] (0 = padding),
	// output "probs" float32 [N, len(Labels)].
	ONNX []byte `json:"-"`
}

// Head is one field of a structured answer's student. Its classes are
// Labels[Start:End], each a normalized value as JSON (Field.Value), and
// Surface[Start:End] the raw JSON the student writes for them. A plain head
// is a softmax: its answer is the likeliest class and its confidence that
// class's probability. A tags head (an array of scalars) has one sigmoid per
// tag: its answer is every tag at probability one half or more, sorted, and
// its confidence the least sure of those yes/no decisions, max(p, 1−p).
type Head struct {
	Path  string `json:"path"`
	Tags  bool   `json:"tags,omitempty"`
	Start int    `json:"start"`
	End   int    `json:"end"`
}

// artifactMagic starts an encoded artifact: "USA1", then the JSON header's
// length (uint32 little endian), the header, and the ONNX bytes.
var artifactMagic = []byte("USA1")

// Marshal encodes the artifact for storage.
func (a *Artifact) Marshal() ([]byte, error) {
	head, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encoding artifact: %w", err)
	}
	out := make([]byte, 0, len(artifactMagic)+4+len(head)+len(a.ONNX))
	out = append(out, artifactMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(head)))
	out = append(out, head...)
	return append(out, a.ONNX...), nil
}

// UnmarshalArtifact decodes what Marshal produced.
func UnmarshalArtifact(b []byte) (*Artifact, error) {
	if !bytes.HasPrefix(b, artifactMagic) || len(b) < len(artifactMagic)+4 {
		return nil, errors.New("decoding artifact: not a student artifact")
	}
	b = b[len(artifactMagic):]
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, errors.New("decoding artifact: truncated header")
	}
	a := &Artifact{}
	if err := json.Unmarshal(b[:n], a); err != nil {
		return nil, fmt.Errorf("decoding artifact: %w", err)
	}
	a.ONNX = append([]byte(nil), b[n:]...)
	if len(a.Labels) == 0 || len(a.Surface) != len(a.Labels) {
		return nil, fmt.Errorf("decoding artifact: %d labels and %d surface forms", len(a.Labels), len(a.Surface))
	}
	if err := a.checkHeads(); err != nil {
		return nil, fmt.Errorf("decoding artifact: %w", err)
	}
	return a, nil
}

// checkHeads reports whether the heads cover Labels in order, each softmax
// head with a class, and Order names every head's path once.
func (a *Artifact) checkHeads() error {
	if len(a.Heads) == 0 {
		if len(a.Order) > 0 {
			return fmt.Errorf("a key order of %d paths without heads", len(a.Order))
		}
		return nil
	}
	next := 0
	heads := make(map[string]bool, len(a.Heads))
	for i, h := range a.Heads {
		switch {
		case h.Start != next || h.End < h.Start || h.End > len(a.Labels):
			return fmt.Errorf("head %d (%q) spans [%d, %d): want it to start at %d, within %d labels", i, h.Path, h.Start, h.End, next, len(a.Labels))
		case !h.Tags && h.End == h.Start:
			return fmt.Errorf("softmax head %d (%q) has no label", i, h.Path)
		case heads[h.Path]:
			return fmt.Errorf("two heads for path %q", h.Path)
		}
		heads[h.Path] = true
		next = h.End
	}
	if next != len(a.Labels) {
		return fmt.Errorf("heads cover %d of %d labels", next, len(a.Labels))
	}
	if len(a.Order) != len(a.Heads) {
		return fmt.Errorf("key order of %d paths for %d heads", len(a.Order), len(a.Heads))
	}
	for _, p := range a.Order {
		if !heads[p] {
			return fmt.Errorf("key order names %q, which is no head's path or repeats", p)
		}
		delete(heads, p)
	}
	return nil
}
