package student

import (
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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
	// legacy is the default before WordsFirst: models trained with it
	// must keep their features.
	legacy := FeaturizerConfig{BucketBits: 17, WordNgrams: 2, CharNgramMin: 4, CharNgramMax: 4, MaxTokens: 512}
	wordsFirst := small
	wordsFirst.WordsFirst, wordsFirst.MaxTokens = true, 12
	inputs := []struct {
		cfg  FeaturizerConfig
		text string
	}{
		{legacy, "WIN a FREE cruise!!! Click now"},
		{legacy, "Lunch moved to 1pm, see you there."},
		{small, "Héllo Wörld — ça va?"},
		{small, ""},
		{FeaturizerConfig{BucketBits: 8, WordNgrams: 1, MaxTokens: 3}, "a b c d e f"},
		{FeaturizerConfig{BucketBits: 12, WordNgrams: 3, MaxTokens: 100}, "the cat the cat sat"},
		{DefaultFeaturizer(), "WIN a FREE cruise!!! Click now"},
		{wordsFirst, "Lunch moved to 1pm, see you there."},
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
	if len(long) != DefaultFeaturizer().MaxTokens {
		t.Errorf("long input has %d features, want the cap %d", len(long), DefaultFeaturizer().MaxTokens)
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

// referenceFeaturize is the featurizer written plainly: strings.ToLower,
// a range over runes, "<tok>" split by rune, and a division for the bucket.
// Featurize must give exactly its output.
func referenceFeaturize(cfg FeaturizerConfig, text string) []int64 {
	var toks []string
	low := strings.ToLower(text)
	start := -1
	for i, r := range low {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			toks = append(toks, low[start:i])
			start = -1
		}
		if !unicode.IsSpace(r) && unicode.IsPrint(r) {
			toks = append(toks, low[i:i+utf8.RuneLen(r)])
		}
	}
	if start >= 0 {
		toks = append(toks, low[start:])
	}
	bucket := func(kind byte, parts ...string) int64 {
		h := fnv.New64a()
		h.Write([]byte{kind, ':'})
		h.Write([]byte(strings.Join(parts, " ")))
		return int64(1 + h.Sum64()%uint64(cfg.Buckets()-1))
	}
	var ids []int64
	seen := map[int64]bool{}
	add := func(id int64) bool {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		return len(ids) < cfg.MaxTokens
	}
	chars := func(tok string) bool {
		runes := []rune("<" + tok + ">")
		for size := cfg.CharNgramMin; cfg.CharNgramMax > 0 && size <= cfg.CharNgramMax && size < len(runes); size++ {
			for j := 0; j+size <= len(runes); j++ {
				if !add(bucket('c', string(runes[j:j+size]))) {
					return false
				}
			}
		}
		return true
	}
	for i, tok := range toks {
		if !add(bucket('w', tok)) ||
			cfg.WordNgrams >= 2 && i >= 1 && !add(bucket('2', toks[i-1], tok)) ||
			cfg.WordNgrams >= 3 && i >= 2 && !add(bucket('3', toks[i-2], toks[i-1], tok)) {
			return ids
		}
		if !cfg.WordsFirst && !chars(tok) {
			return ids
		}
	}
	for _, tok := range toks {
		if !cfg.WordsFirst || !chars(tok) {
			break
		}
	}
	return ids
}

func FuzzFeaturize(f *testing.F) {
	for _, s := range []string{"WIN a FREE cruise!!! Click now", "Héllo Wörld — ça va?", "İstanbul ǅ \xff\xfe x", "a\tb\nc\x00d\u00a0e", ""} {
		f.Add(s, uint8(17), uint8(2), uint8(4))
	}
	f.Fuzz(func(t *testing.T, text string, bits, ngrams, chars uint8) {
		cfg := FeaturizerConfig{BucketBits: 8 + int(bits)%17, WordNgrams: 1 + int(ngrams)%3,
			CharNgramMin: int(chars) % 5, CharNgramMax: int(chars)%5 + int(chars)/5%3, MaxTokens: 1 + len(text)%600,
			WordsFirst: bits/17%2 == 1}
		if cfg.CharNgramMin == 0 {
			cfg.CharNgramMax = 0
		}
		fz, err := NewFeaturizer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, want := fz.Featurize(nil, text), referenceFeaturize(cfg, text)
		if !slices.Equal(got, want) {
			t.Fatalf("config %+v, text %q:\n got %v\nwant %v", cfg, text, got, want)
		}
	})
}
