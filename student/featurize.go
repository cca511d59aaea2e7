package student

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// FeaturizerConfig says how text becomes feature ids. It is stored with
// every trained model: serving must featurize exactly as training did.
type FeaturizerConfig struct {
	// BucketBits sets the number of hash buckets to 2^BucketBits. Feature
	// ids are in [1, 2^BucketBits); 0 is padding. Default 17.
	BucketBits int `json:"bucket_bits"`
	// WordNgrams is the longest word n-gram: 1 unigrams, 2 also bigrams.
	// Default 2.
	WordNgrams int `json:"word_ngrams"`
	// CharNgramMin and CharNgramMax bound the character n-grams taken from
	// each word wrapped in "<" and ">"; 0 turns them off. Default 4 and 4.
	CharNgramMin int `json:"char_ngram_min"`
	CharNgramMax int `json:"char_ngram_max"`
	// MaxTokens caps the distinct features of one input, taken in text
	// order, so the beginning of a long input counts. Default 512.
	MaxTokens int `json:"max_tokens"`
}

// DefaultFeaturizer is the featurizer new students use.
func DefaultFeaturizer() FeaturizerConfig {
	return FeaturizerConfig{BucketBits: 17, WordNgrams: 2, CharNgramMin: 4, CharNgramMax: 4, MaxTokens: 512}
}

// Buckets is the number of embedding rows the featurizer addresses,
// padding row included.
func (c FeaturizerConfig) Buckets() int { return 1 << c.BucketBits }

// Validate reports settings no featurizer can use.
func (c FeaturizerConfig) Validate() error {
	switch {
	case c.BucketBits < 8 || c.BucketBits > 24:
		return fmt.Errorf("bucket_bits: must be in [8,24], got %d", c.BucketBits)
	case c.WordNgrams < 1 || c.WordNgrams > 3:
		return fmt.Errorf("word_ngrams: must be 1, 2 or 3, got %d", c.WordNgrams)
	case c.CharNgramMin < 0 || c.CharNgramMax < c.CharNgramMin || c.CharNgramMax > 8:
		return fmt.Errorf("char n-grams: want 0 <= min <= max <= 8, got %d..%d", c.CharNgramMin, c.CharNgramMax)
	case c.MaxTokens < 1:
		return fmt.Errorf("max_tokens: must be at least 1, got %d", c.MaxTokens)
	}
	return nil
}

// Featurizer turns text into feature ids: the text is lower-cased and split
// into tokens (runs of letters and digits; every other non-space character
// is a token of its own), then each token in order contributes its word
// unigram, the word n-grams ending at it, and the character n-grams of
// "<token>" — each hashed (FNV-1a 64, with a prefix per kind) into a bucket
// in [1, 2^BucketBits). Repeated features count once; at most MaxTokens are
// kept. It is safe for concurrent use.
type Featurizer struct {
	cfg     FeaturizerConfig
	mod     uint64    // buckets − 1: the non-padding ones
	scratch sync.Pool // *scratch reused across calls
}

// scratch is one call's working memory.
type scratch struct {
	seen idSet
	low  []byte     // the lower-cased text
	toks [][2]int32 // tokens as [start, end) offsets into low
	buf  []byte
	offs []int
}

// idSet is a set of feature ids: open addressing with linear probing in a
// table of a power of two at least twice MaxTokens, so it is never more
// than half full. Ids are never 0, which marks an empty slot. A Go map did
// the same job at twice the cost of the whole featurizer.
type idSet struct {
	slots []int64
	shift uint // 64 − log2(len(slots))
}

func newIDSet(maxTokens int) idSet {
	bits := uint(1)
	for 1<<bits < 2*maxTokens {
		bits++
	}
	return idSet{slots: make([]int64, 1<<bits), shift: 64 - bits}
}

// add inserts id and reports whether it was new.
func (s *idSet) add(id int64) bool {
	mask := len(s.slots) - 1
	// Fibonacci hashing spreads the FNV-derived ids over the table.
	for i := int((uint64(id) * 0x9E3779B97F4A7C15) >> s.shift); ; i = (i + 1) & mask {
		switch s.slots[i] {
		case id:
			return false
		case 0:
			s.slots[i] = id
			return true
		}
	}
}

func (s *idSet) reset() { clear(s.slots) }

// NewFeaturizer returns a featurizer for a valid config.
func NewFeaturizer(cfg FeaturizerConfig) (*Featurizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}
	f := &Featurizer{cfg: cfg, mod: uint64(cfg.Buckets() - 1)}
	f.scratch.New = func() any { return &scratch{seen: newIDSet(cfg.MaxTokens)} }
	return f, nil
}

// Config returns the featurizer's settings.
func (f *Featurizer) Config() FeaturizerConfig { return f.cfg }

// Tokens splits text into the featurizer's tokens.
func Tokens(text string) []string {
	low := appendLower(nil, text)
	var toks []string
	for _, t := range appendTokens(nil, low) {
		toks = append(toks, string(low[t[0]:t[1]]))
	}
	return toks
}

// appendLower appends text lower-cased as strings.ToLower does, without
// its allocation when text is ASCII.
func appendLower(dst []byte, text string) []byte {
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			return append(dst, strings.ToLower(text)...)
		}
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// ASCII character classes of the tokenizer, as unicode classifies them.
const (
	asciiSkip  = iota // white space and control characters
	asciiWord         // letters and digits
	asciiPunct        // any other printable character: a token of its own
)

var asciiClass = func() (t [utf8.RuneSelf]uint8) {
	for c := range rune(utf8.RuneSelf) {
		switch {
		case unicode.IsLetter(c) || unicode.IsDigit(c):
			t[c] = asciiWord
		case !unicode.IsSpace(c) && unicode.IsPrint(c):
			t[c] = asciiPunct
		}
	}
	return t
}()

// appendTokens appends the offsets of the tokens of lower-cased text, which
// is valid UTF-8 (strings.ToLower makes it so).
func appendTokens(toks [][2]int32, text []byte) [][2]int32 {
	start := -1
	for i := 0; i < len(text); {
		class, size := asciiClass[text[i]&(utf8.RuneSelf-1)], 1
		if text[i] >= utf8.RuneSelf {
			var r rune
			r, size = utf8.DecodeRune(text[i:])
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r):
				class = asciiWord
			case !unicode.IsSpace(r) && unicode.IsPrint(r):
				class = asciiPunct
			default:
				class = asciiSkip
			}
		}
		if class == asciiWord {
			if start < 0 {
				start = i
			}
			i += size
			continue
		}
		if start >= 0 {
			toks = append(toks, [2]int32{int32(start), int32(i)})
			start = -1
		}
		if class == asciiPunct {
			toks = append(toks, [2]int32{int32(i), int32(i + size)})
		}
		i += size
	}
	if start >= 0 {
		toks = append(toks, [2]int32{int32(start), int32(len(text))})
	}
	return toks
}

// Featurize appends text's feature ids to dst and returns it.
func (f *Featurizer) Featurize(dst []int64, text string) []int64 {
	sc := f.scratch.Get().(*scratch)
	defer func() { sc.seen.reset(); f.scratch.Put(sc) }()
	if len(text) > math.MaxInt32 {
		text = text[:math.MaxInt32] // offsets are int32; MaxTokens stops long before
	}
	sc.low = appendLower(sc.low[:0], text)
	sc.toks = appendTokens(sc.toks[:0], sc.low)
	low, toks := sc.low, sc.toks
	tok := func(i int) []byte { return low[toks[i][0]:toks[i][1]] }
	n := 0
	add := func(id int64) bool {
		if sc.seen.add(id) {
			dst = append(dst, id)
			n++
		}
		return n < f.cfg.MaxTokens
	}
	for i := range toks {
		t := tok(i)
		if !add(f.hash('w', t, nil, nil)) {
			return dst
		}
		if f.cfg.WordNgrams >= 2 && i >= 1 && !add(f.hash('2', tok(i-1), t, nil)) {
			return dst
		}
		if f.cfg.WordNgrams >= 3 && i >= 2 && !add(f.hash('3', tok(i-2), tok(i-1), t)) {
			return dst
		}
		if f.cfg.CharNgramMax == 0 {
			continue
		}
		// Character n-grams of "<tok>", by rune.
		sc.buf = append(append(append(sc.buf[:0], '<'), t...), '>')
		gram := func(j, k int) []byte { return sc.buf[j:k] }
		runes := len(sc.buf)
		if !isASCII(t) {
			sc.offs = sc.offs[:0]
			for j := range string(sc.buf) {
				sc.offs = append(sc.offs, j)
			}
			runes = len(sc.offs)
			sc.offs = append(sc.offs, len(sc.buf))
			gram = func(j, k int) []byte { return sc.buf[sc.offs[j]:sc.offs[k]] }
		}
		for size := f.cfg.CharNgramMin; size <= f.cfg.CharNgramMax && size < runes; size++ {
			for j := 0; j+size <= runes; j++ {
				if !add(f.hash('c', gram(j, j+size), nil, nil)) {
					return dst
				}
			}
		}
	}
	return dst
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// FNV-1a 64 parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hash maps a word feature to its bucket in [1, 2^BucketBits): FNV-1a 64
// of kind, ':', and the non-empty words joined by spaces.
func (f *Featurizer) hash(kind byte, a, b, c []byte) int64 {
	h := uint64(fnvOffset)
	h = (h ^ uint64(kind)) * fnvPrime
	h = (h ^ ':') * fnvPrime
	for _, ch := range a {
		h = (h ^ uint64(ch)) * fnvPrime
	}
	if len(b) > 0 {
		h = (h ^ ' ') * fnvPrime
		for _, ch := range b {
			h = (h ^ uint64(ch)) * fnvPrime
		}
		if len(c) > 0 {
			h = (h ^ ' ') * fnvPrime
			for _, ch := range c {
				h = (h ^ uint64(ch)) * fnvPrime
			}
		}
	}
	return int64(1 + h%f.mod)
}
