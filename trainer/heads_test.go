package trainer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/cache"
	"github.com/understudy-dev/understudy/student"
)

// spamRecords reads the SpamAssassin three-way task (make deps fetches it)
// and gives each e-mail a structured answer, {"spam": …, "kind": …}: most
// in that key order, some the other way round, in capitals or in a Markdown
// fence, as a teacher writes them.
func spamRecords(t *testing.T, norm student.Normalizer) []Example {
	t.Helper()
	path, err := cache.Find("data/spamassassin/spam-3way.jsonl")
	if err != nil {
		t.Fatalf("the SpamAssassin task is missing: run scripts/fetch-spamassassin.sh (make test does): %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for i := 0; sc.Scan(); i++ {
		var l struct{ Text, Label string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		answer := fmt.Sprintf(`{"spam": %v, "kind": %q}`, l.Label == "spam", l.Label)
		switch i % 10 {
		case 3:
			answer = fmt.Sprintf(`{"kind": %q, "spam": %v}`, strings.ToUpper(l.Label), l.Label == "spam")
		case 7:
			answer = "```json\n" + answer + "\n```"
		}
		out = append(out, Example{Text: l.Text, Label: norm.Label(answer), Answer: answer})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTrainStructuredSpam distils structured answers field by field: one
// student with a head per field learns whole records, its artifact round
// trips, and every answer it serves is JSON whose label is its prediction's.
func TestTrainStructuredSpam(t *testing.T) {
	requireRuntime(t)
	norm := student.Normalizer{FoldCase: true, StripTrailingPeriod: true}
	all := spamRecords(t, norm)
	rand.New(rand.NewPCG(7, 8)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	train, fresh := all[:3000], all[3000:]
	opts := DefaultOptions()
	opts.Featurizer.BucketBits = 16
	opts.Normalizer = &norm
	a, err := Train(context.Background(), train, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Metrics
	t.Logf("holdout: record accuracy %.4f, τ %.3f, coverage %.3f, selective agreement %.4f; %d epochs, %.0f examples/s",
		m.HoldoutAccuracy, a.Tau, m.CoverageAtTau, m.SelectiveAgreementAtTau, m.Epochs, m.ExamplesPerSecond)
	wantHeads := []student.Head{{Path: "spam", Start: 0, End: 2}, {Path: "kind", Start: 2, End: 5}}
	if !slices.Equal(a.Heads, wantHeads) || !slices.Equal(a.Order, []string{"spam", "kind"}) {
		t.Fatalf("heads %+v order %q, want %+v and [spam kind]", a.Heads, a.Order, wantHeads)
	}
	if m.HoldoutAccuracy < 0.95 || a.Tau > 1 || m.CoverageAtTau < 0.8 || m.SelectiveAgreementAtTau < 0.96 {
		t.Errorf("metrics %+v (tau %v)", m, a.Tau)
	}

	model := storedModel(t, a, "triage")
	preds := predictAll(t, model, fresh)
	right, confident, agree := 0, 0, 0
	fieldRight := make([]int, 2)
	for i, p := range preds {
		want, _ := student.LabelFields(fresh[i].Label)
		for j, f := range p.Fields {
			if f.Value == want[f.Path] {
				fieldRight[j]++
			}
		}
		if !json.Valid([]byte(p.Answer)) || norm.Label(p.Answer) != p.Label {
			t.Fatalf("answer %s labels as %s, the prediction says %s", p.Answer, norm.Label(p.Answer), p.Label)
		}
		if len(p.Fields) != 2 || p.Fields[0].Path != "spam" || p.Fields[1].Path != "kind" || p.Confidence != min(p.Fields[0].Confidence, p.Fields[1].Confidence) {
			t.Fatalf("prediction %+v", p)
		}
		ok := p.Label == fresh[i].Label
		if ok {
			right++
		}
		if p.Confident {
			confident++
			if ok {
				agree++
			}
		}
	}
	acc := float64(right) / float64(len(preds))
	t.Logf("fresh inputs: record accuracy %.4f (spam %.4f, kind %.4f); %d of %d confident, %.4f of them agree", acc,
		float64(fieldRight[0])/float64(len(preds)), float64(fieldRight[1])/float64(len(preds)), confident, len(preds), float64(agree)/float64(max(confident, 1)))
	if acc < 0.95 || confident < len(preds)*3/4 || float64(agree) < 0.96*float64(confident) {
		t.Errorf("fresh inputs: record accuracy %.4f, %d of %d confident, %d of them agree", acc, confident, len(preds), agree)
	}
}

// taggedTickets is a task with a tags field: each ticket has a topic, told
// by its keywords, and each of four tags whose word it holds, in any order
// and case.
func taggedTickets(n int, seed uint64, norm student.Normalizer) []Example {
	rng := rand.New(rand.NewPCG(seed, 2))
	topics := map[string][]string{
		"billing":  {"invoice", "refund", "charge", "payment", "receipt"},
		"shipping": {"parcel", "delivery", "tracking", "courier", "shipped"},
		"account":  {"password", "login", "username", "locked", "reset"},
	}
	names := []string{"billing", "shipping", "account"}
	tags := []string{"urgent", "fragile", "vip", "abroad"}
	noise := strings.Fields("the a my please help thanks hello order question today soon again why is it")
	var out []Example
	for range n {
		topic := names[rng.IntN(len(names))]
		var words, present []string
		for range 3 + rng.IntN(6) {
			words = append(words, noise[rng.IntN(len(noise))])
		}
		words = append(words, topics[topic][rng.IntN(5)], topics[topic][rng.IntN(5)])
		for _, tag := range tags {
			if rng.IntN(10) < 3 {
				words = append(words, tag)
				if rng.IntN(4) == 0 {
					tag = strings.ToUpper(tag)
				}
				present = append(present, fmt.Sprintf("%q", tag))
			}
		}
		rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		rng.Shuffle(len(present), func(i, j int) { present[i], present[j] = present[j], present[i] })
		answer := fmt.Sprintf(`{"topic": %q, "tags": [%s]}`, topic, strings.Join(present, ", "))
		out = append(out, Example{Text: strings.Join(words, " "), Label: norm.Label(answer), Answer: answer})
	}
	return out
}

// TestTrainTags: a tags field becomes a head of sigmoids, one per tag, which
// learns which tags a text holds, any number of them at once.
func TestTrainTags(t *testing.T) {
	requireRuntime(t)
	norm := student.Normalizer{FoldCase: true, StripTrailingPeriod: true}
	opts := DefaultOptions()
	opts.Featurizer.BucketBits, opts.MaxEpochs, opts.HoldoutPairs = 12, 10, 300 // one round
	a, err := Train(context.Background(), taggedTickets(1500, 1, norm), opts)
	if err != nil {
		t.Fatal(err)
	}
	tagsHead := student.Head{Path: "tags", Tags: true, Start: 3, End: 7}
	if len(a.Heads) != 2 || a.Heads[1] != tagsHead || !slices.Equal(a.Labels[3:], []string{`"abroad"`, `"fragile"`, `"urgent"`, `"vip"`}) {
		t.Fatalf("heads %+v labels %q", a.Heads, a.Labels)
	}
	t.Logf("holdout: record accuracy %.4f, τ %.3f, coverage %.3f", a.Metrics.HoldoutAccuracy, a.Tau, a.Metrics.CoverageAtTau)
	model := storedModel(t, a, "tickets")
	fresh := taggedTickets(500, 2, norm)
	preds := predictAll(t, model, fresh)
	records, tagSets, several := 0, 0, 0
	for i, p := range preds {
		want, _ := student.LabelFields(fresh[i].Label)
		if p.Fields[1].Value == want["tags"] {
			tagSets++
			if strings.Count(want["tags"], ",") > 0 {
				several++ // two tags or more, right
			}
		}
		if p.Label == fresh[i].Label {
			records++
		}
		if norm.Label(p.Answer) != p.Label {
			t.Fatalf("answer %s labels as %s, the prediction says %s", p.Answer, norm.Label(p.Answer), p.Label)
		}
	}
	t.Logf("fresh inputs: tag sets right %d, records right %d of %d; %d right sets of two tags or more", tagSets, records, len(preds), several)
	if tagSets < len(preds)*9/10 || records < len(preds)*9/10 || several < 50 {
		t.Errorf("fresh inputs: tag sets right %d, records right %d of %d; %d right sets of two tags or more", tagSets, records, len(preds), several)
	}
}

// TestJudgeRecord: a structured answer's confidence is its least confident
// head's, and it is right only when every head is; its holdout loss is the
// train step's, at any temperature.
func TestJudgeRecord(t *testing.T) {
	cfg := ModelConfig{Buckets: 12, Dim: 4, Classes: 8, Heads: tinyHeads}
	// kind: class 0 at p = e²/(e²+2); tags: yes at σ(3), no at σ(−3) (sure
	// of both to 0.9526); more: yes at σ(0.5) = 0.6225, the least sure;
	// ok: class 7 at σ(1) = 0.7311.
	logits := []float32{2, 0, 0, 3, -3, 0.5, 0, 1}
	for _, tc := range []struct {
		name    string
		s       sample
		correct bool
	}{
		{"every head right", sample{class: 4, targets: []int32{0, 3, 5, 7}}, true},
		{"a tag too many", sample{class: 4, targets: []int32{0, 3, 7}}, false},
		{"a tag missing", sample{class: 4, targets: []int32{0, 3, 4, 5, 7}}, false},
		{"one softmax head wrong", sample{class: 4, targets: []int32{0, 3, 5, 6}}, false},
		{"outside the space", sample{class: -1}, false},
	} {
		conf, correct := judge(cfg, logits, &tc.s, 1)
		if math.Abs(conf-1/(1+math.Exp(-0.5))) > 1e-9 || correct != tc.correct {
			t.Errorf("%s: confidence %v, correct %v; want 0.6225, %v", tc.name, conf, correct, tc.correct)
		}
	}
	s := sample{class: 0, targets: []int32{1, 4, 5, 6}}
	for _, temp := range []float64{1, 0.5, 2.5} {
		scaled := make([]float64, len(logits))
		for i, l := range logits {
			scaled[i] = float64(l) / temp
		}
		_, want := referenceHeads(cfg, scaled, s.targets)
		if got := sampleNLL(cfg, logits, &s, temp); math.Abs(got-want) > 1e-9 {
			t.Errorf("temperature %v: holdout loss %v, train step's %v", temp, got, want)
		}
	}
}
