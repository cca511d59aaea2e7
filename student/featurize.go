package student

import (
	"fmt"
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
	// order, so the beginning of a long input counts. Default 256.
	MaxTokens int `json:"max_tokens"`
	// WordsFirst takes the word n-grams of the whole input before any
	// character n-gram, so that character n-grams fill only the room the
	// words leave under MaxTokens. Without it each token's character
	// n-grams follow its word n-grams (models trained before this setting
	// existed). Default true.
	WordsFirst bool `json:"words_first"`
}

// DefaultFeaturizer is the featurizer new students use.
func DefaultFeaturizer() FeaturizerConfig {
	return FeaturizerConfig{BucketBits: 17, WordNgrams: 2, CharNgramMin: 4, CharNgramMax: 4, MaxTokens: 256, WordsFirst: true}
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
// unigram and the word n-grams ending at it, and afterwards (or right after
// them, without WordsFirst) each token the character n-grams of "<token>" —
// each hashed (FNV-1a 64, with a prefix per kind) into a bucket in
// [1, 2^BucketBits). Repeated features count once; at most MaxTokens are
// kept. It is safe for concurrent use.
type Featurizer struct {
	cfg     FeaturizerConfig
	mod     uint64    // buckets − 1: the non-padding ones
	scratch sync.Pool // *scratch reused across calls
}

// scratch is one call's working memory.
type scratch struct {
	seen idSet
	low  []byte   // the lower-cased text
	toks [][2]int // tokens as offsets into low, kept for character n-grams
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
	for start, end := nextToken(low, 0); start < len(low); start, end = nextToken(low, end) {
		toks = append(toks, string(low[start:end]))
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

// nextToken returns the offsets [start, end) of the first token of
// lower-cased text at or after byte i; start is len(text) when there is
// none. text is valid UTF-8 (strings.ToLower makes it so). Tokens are found
// one at a time because MaxTokens usually stops before the end of the text.
func nextToken(text []byte, i int) (start, end int) {
	for i < len(text) {
		class, size := classAt(text, i)
		switch class {
		case asciiPunct:
			return i, i + size
		case asciiWord:
			start = i
			for i += size; i < len(text); i += size {
				if class, size = classAt(text, i); class != asciiWord {
					break
				}
			}
			return start, i
		}
		i += size
	}
	return len(text), len(text)
}

// classAt returns the class of the character at text[i] and its length.
func classAt(text []byte, i int) (class uint8, size int) {
	if text[i] < utf8.RuneSelf {
		return asciiClass[text[i]], 1
	}
	r, size := utf8.DecodeRune(text[i:])
	switch {
	case unicode.IsLetter(r) || unicode.IsDigit(r):
		return asciiWord, size
	case !unicode.IsSpace(r) && unicode.IsPrint(r):
		return asciiPunct, size
	}
	return asciiSkip, size
}

// Featurize appends text's feature ids to dst and returns it.
func (f *Featurizer) Featurize(dst []int64, text string) []int64 {
	sc := f.scratch.Get().(*scratch)
	defer func() { sc.seen.reset(); f.scratch.Put(sc) }()
	sc.low = appendLower(sc.low[:0], text)
	r := featurizing{f: f, sc: sc, dst: dst}
	chars := f.cfg.CharNgramMax > 0
	later := chars && f.cfg.WordsFirst // character n-grams after all words
	sc.toks = sc.toks[:0]
	var t, prev1, prev2 []byte // the token, and the two before it
	for i, start, end := 0, 0, 0; ; i++ {
		if start, end = nextToken(sc.low, end); start == len(sc.low) {
			break
		}
		t, prev1, prev2 = sc.low[start:end], t, prev1
		if !r.words(i, t, prev1, prev2) || (chars && !later && !r.chars(t)) {
			return r.dst
		}
		if later {
			sc.toks = append(sc.toks, [2]int{start, end})
		}
	}
	for _, tok := range sc.toks {
		if !r.chars(sc.low[tok[0]:tok[1]]) {
			break
		}
	}
	return r.dst
}

// featurizing is one Featurize call's state.
type featurizing struct {
	f   *Featurizer
	sc  *scratch
	dst []int64
	n   int // distinct ids appended
}

// add appends id unless it was seen and reports whether there is room for
// more.
func (r *featurizing) add(id int64) bool {
	if r.sc.seen.add(id) {
		r.dst = append(r.dst, id)
		r.n++
	}
	return r.n < r.f.cfg.MaxTokens
}

// words adds the word n-grams that end at token i, t; prev1 and prev2 are
// the tokens before it. It reports whether there is room for more.
func (r *featurizing) words(i int, t, prev1, prev2 []byte) bool {
	f := r.f
	return r.add(f.hash(prefixWord, t, nil, nil)) &&
		(f.cfg.WordNgrams < 2 || i < 1 || r.add(f.hash(prefixBigram, prev1, t, nil))) &&
		(f.cfg.WordNgrams < 3 || i < 2 || r.add(f.hash(prefixTrigram, prev2, prev1, t)))
}

// chars adds the character n-grams of "<t>", by rune, and reports whether
// there is room for more.
func (r *featurizing) chars(t []byte) bool {
	sc, cfg := r.sc, r.f.cfg
	sc.buf = append(append(append(sc.buf[:0], '<'), t...), '>')
	ascii := isASCII(t)
	runes := len(sc.buf)
	if !ascii {
		sc.offs = sc.offs[:0]
		for j := range string(sc.buf) {
			sc.offs = append(sc.offs, j)
		}
		runes = len(sc.offs)
		sc.offs = append(sc.offs, len(sc.buf))
	}
	for size := cfg.CharNgramMin; size <= cfg.CharNgramMax && size < runes; size++ {
		for j := 0; j+size <= runes; j++ {
			gram := sc.buf[j : j+size]
			if !ascii {
				gram = sc.buf[sc.offs[j]:sc.offs[j+size]]
			}
			if !r.add(r.f.hash(prefixChar, gram, nil, nil)) {
				return false
			}
		}
	}
	return true
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

// The FNV-1a 64 states after each kind's prefix "<kind>:", which every
// feature of that kind starts with.
var (
	prefixWord    = fnvPrefix('w')
	prefixBigram  = fnvPrefix('2')
	prefixTrigram = fnvPrefix('3')
	prefixChar    = fnvPrefix('c')
)

func fnvPrefix(kind byte) uint64 {
	return ((fnvOffset^uint64(kind))*fnvPrime ^ ':') * fnvPrime
}

// hash maps a feature to its bucket in [1, 2^BucketBits): FNV-1a 64 of its
// kind's prefix (h is the state after it), then the non-empty words joined
// by spaces.
func (f *Featurizer) hash(h uint64, a, b, c []byte) int64 {
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
