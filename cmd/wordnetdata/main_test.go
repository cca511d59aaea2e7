package main

import (
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/internal/taskfile"
)

// TestCategoriesCoverEverySupersense: every noun and verb supersense that
// the task files keep has exactly one category.
func TestCategoriesCoverEverySupersense(t *testing.T) {
	seen := map[string]string{}
	for _, c := range categories {
		for _, s := range c.supersenses {
			key := c.pos + "." + s
			if prev, dup := seen[key]; dup {
				t.Errorf("%s is in %s and %s", key, prev, c.category)
			}
			seen[key] = c.category
		}
	}
	for _, name := range lexNames {
		pos, s, _ := strings.Cut(name, ".")
		if (pos != "noun" && pos != "verb") || name == "noun.Tops" {
			continue
		}
		if _, ok := category(pos, s); !ok {
			t.Errorf("%s has no category", name)
		}
		delete(seen, name)
	}
	for key := range seen {
		t.Errorf("%s is not a supersense", key)
	}
}

func TestAppendRecords(t *testing.T) {
	got, err := appendRecords(nil, "noun", []taskfile.Line{{Text: "cat: a feline", Label: "animal"}, {Text: "idea: a thought", Label: "cognition"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err = appendRecords(got, "verb", []taskfile.Line{{Text: "run: move fast", Label: "motion"}, {Text: "cat: a feline", Label: "motion"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []taskfile.Line{
		{Text: "cat: a feline", Label: `{"pos":"noun","category":"physical"}`},
		{Text: "idea: a thought", Label: `{"pos":"noun","category":"abstract"}`},
		{Text: "run: move fast", Label: `{"pos":"verb","category":"action"}`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := appendRecords(nil, "verb", []taskfile.Line{{Text: "x", Label: "artifact"}}); err == nil {
		t.Error("a verb supersense that does not exist got a category")
	}
}
