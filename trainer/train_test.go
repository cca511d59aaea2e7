package trainer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

func TestBuildLabelSpace(t *testing.T) {
	ex := func(pairs ...string) []Example {
		var out []Example
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, Example{Label: pairs[i], Answer: pairs[i+1]})
		}
		return out
	}
	rep := func(n int, label, answer string) []string {
		var out []string
		for range n {
			out = append(out, label, answer)
		}
		return out
	}
	closed := ex(append(append(append(rep(5, "spam", "Spam."), rep(2, "spam", "spam")...), rep(4, "ham", "ham")...), "rare", "rare")...)
	s := BuildLabelSpace(closed, DefaultLabelRule(), student.Normalizer{})
	if s.OpenEnded || strings.Join(s.Labels, ",") != "spam,ham" || s.Surface[0] != "Spam." || s.Counts[0] != 7 {
		t.Errorf("closed: %+v", s)
	}
	if s.Coverage < 0.91 || s.Coverage > 0.92 {
		t.Errorf("coverage %v, want 11/12", s.Coverage)
	}
	var open []string
	for i := range 50 {
		open = append(open, fmt.Sprint("answer ", i), fmt.Sprint("Answer ", i))
	}
	if s := BuildLabelSpace(ex(open...), DefaultLabelRule(), student.Normalizer{}); !s.OpenEnded || !strings.Contains(s.Reason, "open-ended") {
		t.Errorf("open: %+v", s)
	}
	if s := BuildLabelSpace(ex(rep(10, "yes", "Yes")...), DefaultLabelRule(), student.Normalizer{}); !s.OpenEnded || !strings.Contains(s.Reason, "one answer") {
		t.Errorf("one label: %+v", s)
	}
	if s := BuildLabelSpace(closed, LabelRule{MinCount: 3, MinCoverage: 0.5, MaxLabels: 1}, student.Normalizer{}); len(s.Labels) != 1 {
		t.Errorf("max labels: %+v", s)
	}
}

func TestChooseTau(t *testing.T) {
	// Confidences from logits [x, 0] at temperature 1; the first 20 are
	// right, the next 5 wrong, the last 5 right.
	var logits [][]float32
	var holdout []sample
	for i := range 30 {
		logits = append(logits, []float32{float32(10 - 0.3*float64(i)), 0})
		class := 0
		if i >= 20 && i < 25 {
			class = 1
		}
		holdout = append(holdout, sample{class: class})
	}
	tau, cov, sel, acc := chooseTau(ModelConfig{Classes: 2}, logits, holdout, 1, 0.96, 10)
	if cov != 20.0/30 || sel != 1 || acc != 25.0/30 {
		t.Errorf("tau %v coverage %v selective %v accuracy %v; want coverage 2/3, selective 1, accuracy 5/6", tau, cov, sel, acc)
	}
	if tau, _, _, _ := chooseTau(ModelConfig{Classes: 2}, logits, holdout, 1, 0.99, 25); tau <= 1 {
		t.Errorf("no threshold reaches 0.99 on 25 samples, but tau = %v", tau)
	}
}

// synthetic makes a task where each class has its own keywords amid shared
// noise words.
func synthetic(n int, seed uint64) []Example {
	rng := rand.New(rand.NewPCG(seed, 1))
	classes := map[string][]string{
		"billing":  {"invoice", "refund", "charge", "payment", "receipt"},
		"shipping": {"parcel", "delivery", "tracking", "courier", "shipped"},
		"account":  {"password", "login", "username", "locked", "reset"},
	}
	noise := strings.Fields("the a my please help thanks hello order question today urgent soon again why")
	names := []string{"billing", "shipping", "account"}
	var out []Example
	for range n {
		c := names[rng.IntN(len(names))]
		var words []string
		for range 3 + rng.IntN(6) {
			words = append(words, noise[rng.IntN(len(noise))])
		}
		words = append(words, classes[c][rng.IntN(5)], classes[c][rng.IntN(5)])
		rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		out = append(out, Example{Text: strings.Join(words, " "), Label: c, Answer: strings.ToUpper(c[:1]) + c[1:]})
	}
	return out
}

// TestTrainAndServe trains through ONNX Runtime, stores the artifact, loads
// it for serving and checks the student answers held-out inputs like the
// teacher.
func TestTrainAndServe(t *testing.T) {
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Featurizer.BucketBits = 12
	opts.Dim = 16
	a, err := Train(context.Background(), synthetic(600, 1), opts)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Metrics
	// 600 pairs are few: the student trains on all, and each was held out
	// once, in one of the five rounds.
	if m.Labels != 3 || m.TrainPairs != 600 || m.HoldoutPairs != 600 || m.HoldoutAccuracy < 0.95 || a.Tau > 1 || m.CoverageAtTau < 0.5 ||
		m.SelectiveAgreementAtTau < 0.96 || m.ModelBytes != len(a.ONNX) || m.Epochs < 1 || m.ExamplesPerSecond <= 0 {
		t.Errorf("metrics %+v (tau %v)", m, a.Tau)
	}
	model := storedModel(t, a, "support")
	test := synthetic(200, 2)
	preds := predictAll(t, model, test)
	confident, agree := 0, 0
	for i, p := range preds {
		if p.Answer != strings.ToUpper(p.Label[:1])+p.Label[1:] {
			t.Fatalf("answer %q is not the surface form of %q", p.Answer, p.Label)
		}
		if p.Confident {
			confident++
			if p.Label == test[i].Label {
				agree++
			}
		}
		if one, err := model.Predict(test[i].Text); err != nil || one.Label != p.Label || one.Confidence-p.Confidence > 1e-5 || p.Confidence-one.Confidence > 1e-5 {
			t.Fatalf("single prediction %+v (%v) differs from batch %+v", one, err, p)
		}
	}
	if confident < 100 || float64(agree)/float64(confident) < 0.95 {
		t.Errorf("fresh inputs: %d confident, %d of them agree", confident, agree)
	}
}

func TestTrainOpenEnded(t *testing.T) {
	var ex []Example
	for i := range 300 {
		ex = append(ex, Example{Text: fmt.Sprint("text ", i), Label: fmt.Sprint("a", i), Answer: fmt.Sprint("A", i)})
	}
	_, err := Train(context.Background(), ex, DefaultOptions())
	var oe *OpenEndedError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOpenEnded) || oe.Reason == "" {
		t.Errorf("err = %v, want an OpenEndedError with a reason", err)
	}
}

// TestTrainRounds: the student trains on every pair in the label space,
// and the rounds hold out as many folds as HoldoutPairs asks for.
func TestTrainRounds(t *testing.T) {
	if err := student.InitRuntime(""); err != nil {
		t.Fatal(err)
	}
	ex := synthetic(500, 3)
	ex = append(ex, Example{Text: "a one-off question", Label: "other", Answer: "Other"}) // outside the label space
	for _, tc := range []struct {
		holdoutPairs, wantHoldout int
	}{
		{1, 101},    // one round: one fold of five
		{150, 202},  // two rounds
		{5000, 501}, // every fold
	} {
		opts := DefaultOptions()
		opts.Featurizer.BucketBits, opts.MaxEpochs, opts.HoldoutPairs = 10, 2, tc.holdoutPairs
		a, err := Train(context.Background(), ex, opts)
		if err != nil {
			t.Fatal(err)
		}
		if m := a.Metrics; m.TrainPairs != 500 || m.HoldoutPairs < tc.wantHoldout-1 || m.HoldoutPairs > tc.wantHoldout {
			t.Errorf("holdout pairs %d: trained on %d, held out %d; want 500 and %d", tc.holdoutPairs, m.TrainPairs, m.HoldoutPairs, tc.wantHoldout)
		}
	}
}

// storedModel stores a as version 1 of domain the way the scheduler does
// (Marshal), reads it back and loads it for serving; the model is closed
// when the test ends.
func storedModel(t *testing.T, a *student.Artifact, domain string) *student.Model {
	t.Helper()
	a.Domain, a.Version = domain, 1
	raw, err := a.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := student.UnmarshalArtifact(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := student.Load(back, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// predictAll predicts every example's text in one batch.
func predictAll(t *testing.T, m *student.Model, examples []Example) []student.Prediction {
	t.Helper()
	texts := make([]string, len(examples))
	for i, e := range examples {
		texts[i] = e.Text
	}
	preds, err := m.PredictBatch(texts)
	if err != nil {
		t.Fatal(err)
	}
	return preds
}
