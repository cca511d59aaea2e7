package student

import (
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestFeaturizerGolden pins the featurizer's output: a change here changes
// what every stored model means, so it must be deliberate (-update).
func TestFeaturizerGolden(t *testing.T) {
	type vector struct {
		Config FeaturizerConfig `json:"config"`
		Text   string           `json:"text"`
		IDs    []int64          `json:"ids"`
	}
	small := FeaturizerConfig{BucketBits: 10, WordNgrams: 2, CharNgramMin: 3, CharNgramMax: 4, MaxTokens: 64}
	inputs := []struct {
		cfg  FeaturizerConfig
		text string
	}{
		{DefaultFeaturizer(), "WIN a FREE cruise!!! Click now"},
		{DefaultFeaturizer(), "Lunch moved to 1pm, see you there."},
		{small, "Héllo Wörld — ça va?"},
		{small, ""},
		{FeaturizerConfig{BucketBits: 8, WordNgrams: 1, MaxTokens: 3}, "a b c d e f"},
		{FeaturizerConfig{BucketBits: 12, WordNgrams: 3, MaxTokens: 100}, "the cat the cat sat"},
	}
	var got []vector
	for _, in := range inputs {
		f, err := NewFeaturizer(in.cfg)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, vector{in.cfg, in.text, f.Featurize(nil, in.text)})
	}
	const path = "testdata/featurizer_golden.json"
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []vector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if want[i].IDs == nil {
			want[i].IDs = []int64{}
		}
		if got[i].IDs == nil {
			got[i].IDs = []int64{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("featurizer output changed:\n got %v\nwant %v", got, want)
	}
}

func TestFeaturizerProperties(t *testing.T) {
	f, err := NewFeaturizer(DefaultFeaturizer())
	if err != nil {
		t.Fatal(err)
	}
	a := f.Featurize(nil, "Cheap MEDS, no prescription")
	if b := f.Featurize(nil, "cheap meds ,  no\tprescription"); !reflect.DeepEqual(a, b) {
		t.Error("case and spacing should not change features")
	}
	seen := map[int64]bool{}
	for _, id := range a {
		if id < 1 || id >= int64(DefaultFeaturizer().Buckets()) || seen[id] {
			t.Errorf("id %d out of range or repeated", id)
		}
		seen[id] = true
	}
	var words []string
	for i := range 2000 {
		words = append(words, fmt.Sprintf("word%d", i))
	}
	long := f.Featurize(nil, strings.Join(words, " "))
	if len(long) != 512 {
		t.Errorf("long input has %d features, want the cap 512", len(long))
	}
	// The hash is FNV-1a 64 of "w:" + token.
	h := fnv.New64a()
	h.Write([]byte("w:cheap"))
	if want := int64(1 + h.Sum64()%uint64(DefaultFeaturizer().Buckets()-1)); a[0] != want {
		t.Errorf("first feature %d, want FNV-1a bucket %d", a[0], want)
	}
	if got := Tokens("Hi, $100 off!!"); strings.Join(got, "|") != "hi|,|$|100|off|!|!" {
		t.Errorf("Tokens = %q", got)
	}
	if _, err := NewFeaturizer(FeaturizerConfig{BucketBits: 30, WordNgrams: 1, MaxTokens: 1}); err == nil {
		t.Error("bucket_bits 30 accepted")
	}
}

func BenchmarkFeaturize(b *testing.B) {
	f, _ := NewFeaturizer(DefaultFeaturizer())
	text := strings.Repeat("Quarterly numbers attached, please review before Friday. ", 18)
	var dst []int64
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		dst = f.Featurize(dst[:0], text)
	}
}
