package teachersim

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestLoadTask(t *testing.T) {
	tests := []struct {
		name, path, system string
		wantName           string
		wantSystem         string
		wantExamples       int
	}{
		{
			name: "system prompt from file", path: "testdata/sentiment.jsonl",
			wantName: "sentiment", wantSystem: sentimentSystem, wantExamples: 4,
		},
		{
			name: "system argument wins over file", path: "testdata/sentiment.jsonl", system: "  Is it good?  ",
			wantName: "sentiment", wantSystem: "Is it good?", wantExamples: 4,
		},
		{
			name: "byte order mark and CRLF", path: "testdata/windows.jsonl",
			wantName: "windows", wantSystem: "Windows prompt", wantExamples: 1,
		},
		{
			name: "default system prompt", path: "testdata/topic.jsonl",
			wantName: "topic", wantSystem: defaultSystem, wantExamples: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task, err := LoadTask("", tt.path, tt.system)
			if err != nil {
				t.Fatalf("LoadTask: %v", err)
			}
			if task.Name != tt.wantName || task.System != tt.wantSystem || len(task.Examples) != tt.wantExamples {
				t.Errorf("got name %q, system %q, %d examples; want %q, %q, %d",
					task.Name, task.System, len(task.Examples), tt.wantName, tt.wantSystem, tt.wantExamples)
			}
		})
	}
	t.Run("examples in file order", func(t *testing.T) {
		task, err := LoadTask("s", "testdata/sentiment.jsonl", "")
		if err != nil {
			t.Fatal(err)
		}
		want := Example{Text: "An absolute masterpiece.", Label: "positive"}
		if task.Name != "s" || task.Examples[2] != want {
			t.Errorf("got name %q, Examples[2] %+v; want \"s\", %+v", task.Name, task.Examples[2], want)
		}
	})
}

func TestLoadTaskErrors(t *testing.T) {
	tests := []struct {
		path string
		want string // substring of the error
	}{
		{"testdata/bad_json.jsonl", `loading task "t": testdata/bad_json.jsonl:3: parsing line:`},
		{"testdata/bad_no_label.jsonl", "testdata/bad_no_label.jsonl:2: example has no label"},
		{"testdata/bad_orphan_label.jsonl", "testdata/bad_orphan_label.jsonl:2: label without text"},
		{"testdata/bad_two_systems.jsonl", "testdata/bad_two_systems.jsonl:3: system prompt set again (first on line 1)"},
		{"testdata/bad_no_examples.jsonl", "testdata/bad_no_examples.jsonl: no examples"},
		{"testdata/bad_text_and_system.jsonl", "testdata/bad_text_and_system.jsonl:1: want either text or system, not both"},
		{"testdata/missing.jsonl", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			_, err := LoadTask("t", tt.path, "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadTask(%s) error = %v, want it to contain %q", tt.path, err, tt.want)
			}
		})
	}
	t.Run("missing file wraps fs.ErrNotExist", func(t *testing.T) {
		_, err := LoadTask("t", "testdata/missing.jsonl", "")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v is not fs.ErrNotExist", err)
		}
	})
}

func TestSwapMapChangesEveryLabel(t *testing.T) {
	examples := []Example{{"a", "red"}, {"b", "green"}, {"c", "blue"}, {"d", "red"}}
	m := swapMap(examples)
	got := map[string]bool{}
	for _, e := range examples {
		to := m[e.Label]
		if to == e.Label {
			t.Errorf("label %q swaps to itself", e.Label)
		}
		got[to] = true
	}
	if len(got) != 3 {
		t.Errorf("swapped labels %v, want all three labels used", got)
	}
}

// FuzzParseTask checks that parsing any file either fails or yields a task
// with examples that all have labels.
func FuzzParseTask(f *testing.F) {
	f.Add([]byte("{\"system\":\"s\"}\n{\"text\":\"a\",\"label\":\"b\"}\n"))
	f.Add([]byte("{\"text\":\"a\"}"))
	f.Add([]byte("\n\n[1,2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := parseTask("f", "f.jsonl", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.jsonl:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(task.Examples) == 0 {
			t.Fatal("task without examples parsed")
		}
		for _, e := range task.Examples {
			if e.Label == "" {
				t.Fatalf("example %+v has no label", e)
			}
		}
	})
}
