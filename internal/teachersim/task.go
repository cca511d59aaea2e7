package teachersim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// defaultSystem is the system prompt of a task that gets none from code,
// command line or its file.
const defaultSystem = "Classify the following text. Answer with the label only."

// Task is one labelled classification task the teacher knows the answers to.
type Task struct {
	// Name identifies the task; names are unique within a Config.
	Name string
	// System is the system prompt that selects this task. Empty means
	// "Classify the following text. Answer with the label only."
	System string
	// Examples are the texts the teacher can answer, with their labels.
	Examples []Example
}

// Example is one labelled text of a Task.
type Example struct {
	Text, Label string
}

// taskLine is one line of a task file: an example, or the task's system
// prompt.
type taskLine struct {
	Text   *string `json:"text"`
	Label  *string `json:"label"`
	System *string `json:"system"`
}

// LoadTask reads a task from a JSONL file whose lines are
// {"text": "...", "label": "..."} examples, optionally with one
// {"system": "..."} line giving the task's system prompt. A non-empty system
// argument wins over the file's; with neither, the task gets the default
// prompt. Blank lines are skipped and unknown fields ignored; any other bad
// line is an error naming the file and line number. An empty name defaults to
// the file's base name without its extension.
func LoadTask(name, path, system string) (Task, error) {
	if name == "" {
		base := filepath.Base(path)
		name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Task{}, fmt.Errorf("loading task %q: %w", name, err)
	}
	t, err := parseTask(name, path, data)
	if err != nil {
		return Task{}, fmt.Errorf("loading task %q: %w", name, err)
	}
	if s := strings.TrimSpace(system); s != "" {
		t.System = s
	}
	if t.System == "" {
		t.System = defaultSystem
	}
	return t, nil
}

// parseTask parses the JSONL content of a task file; path only names the file
// in errors.
func parseTask(name, path string, data []byte) (Task, error) {
	t := Task{Name: name}
	systemLine := 0
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	for n := 1; len(data) > 0; n++ {
		var raw []byte
		raw, data, _ = bytes.Cut(data, []byte{'\n'})
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		var l taskLine
		if err := json.Unmarshal(raw, &l); err != nil {
			return Task{}, fmt.Errorf("%s:%d: parsing line: %w", path, n, err)
		}
		switch {
		case l.Text != nil && l.System != nil:
			return Task{}, fmt.Errorf("%s:%d: want either text or system, not both", path, n)
		case l.Text != nil:
			if l.Label == nil || *l.Label == "" {
				return Task{}, fmt.Errorf("%s:%d: example has no label", path, n)
			}
			t.Examples = append(t.Examples, Example{Text: *l.Text, Label: *l.Label})
		case l.Label != nil:
			return Task{}, fmt.Errorf("%s:%d: label without text", path, n)
		case l.System != nil:
			if systemLine != 0 {
				return Task{}, fmt.Errorf("%s:%d: system prompt set again (first on line %d)", path, n, systemLine)
			}
			systemLine = n
			t.System = strings.TrimSpace(*l.System)
		default:
			return Task{}, fmt.Errorf("%s:%d: want {\"text\",\"label\"} or {\"system\"}", path, n)
		}
	}
	if len(t.Examples) == 0 {
		return Task{}, fmt.Errorf("%s: no examples", path)
	}
	return t, nil
}

// answer is what the teacher says for one known text: its label, and the
// label it says instead while labels are swapped.
type answer struct {
	label, swapped string
}

// table maps a text to its answer. Each example is keyed by its text and by
// its trimmed text, the first example of a text winning.
type table map[string]answer

func (t table) add(text string, a answer) {
	if _, ok := t[text]; !ok {
		t[text] = a
	}
	if tr := strings.TrimSpace(text); tr != text {
		if _, ok := t[tr]; !ok {
			t[tr] = a
		}
	}
}

// lookup finds text, or failing that its trimmed form. It does not allocate.
func (t table) lookup(text []byte) (answer, bool) {
	if a, ok := t[string(text)]; ok {
		return a, true
	}
	a, ok := t[string(bytes.TrimSpace(text))]
	return a, ok
}

// index answers lookups for all tasks of a Server. It is built once by New
// and only read afterwards.
type index struct {
	bySystem map[string]table // trimmed system prompt → tasks with that prompt
	all      table            // every task, in Config order
}

func newIndex(tasks []Task) (index, error) {
	ix := index{bySystem: make(map[string]table), all: make(table)}
	seen := make(map[string]bool, len(tasks))
	for i, t := range tasks {
		if t.Name == "" {
			return index{}, fmt.Errorf("tasks[%d].name: must not be empty", i)
		}
		if seen[t.Name] {
			return index{}, fmt.Errorf("tasks[%d].name: duplicate task name %q", i, t.Name)
		}
		seen[t.Name] = true
		for j, e := range t.Examples {
			if e.Label == "" {
				return index{}, fmt.Errorf("tasks[%d].examples[%d].label: must not be empty (task %q)", i, j, t.Name)
			}
		}
		system := strings.TrimSpace(t.System)
		if system == "" {
			system = defaultSystem
		}
		bySys := ix.bySystem[system]
		if bySys == nil {
			bySys = make(table, len(t.Examples))
			ix.bySystem[system] = bySys
		}
		swap := swapMap(t.Examples)
		for _, e := range t.Examples {
			a := answer{label: e.Label, swapped: swap[e.Label]}
			bySys.add(e.Text, a)
			ix.all.add(e.Text, a)
		}
	}
	return ix, nil
}

// swapMap maps each label of a task to the next one in sorted order, the last
// to the first: a deterministic relabelling that changes every answer of a
// task with two or more labels.
func swapMap(examples []Example) map[string]string {
	labels := make([]string, 0, len(examples))
	for _, e := range examples {
		labels = append(labels, e.Label)
	}
	slices.Sort(labels)
	labels = slices.Compact(labels)
	m := make(map[string]string, len(labels))
	for i, l := range labels {
		m[l] = labels[(i+1)%len(labels)]
	}
	return m
}

// chat answers a chat request from its system prompt and user text: the
// tasks whose system prompt equals the trimmed system are searched, or all
// tasks when none has that prompt.
func (ix *index) chat(system, text []byte) (answer, bool) {
	t, ok := ix.bySystem[string(bytes.TrimSpace(system))]
	if !ok {
		t = ix.all
	}
	return t.lookup(text)
}

// completion answers a completion request's prompt from all tasks.
func (ix *index) completion(prompt []byte) (answer, bool) {
	return ix.all.lookup(prompt)
}
