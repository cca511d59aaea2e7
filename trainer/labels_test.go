package trainer

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/student"
)

// records makes examples of the answers, each repeated n times, labelled
// as the gateway labels them.
func records(n int, answers ...string) []Example {
	norm := student.Normalizer{FoldCase: true, StripTrailingPeriod: true}
	var out []Example
	for _, a := range answers {
		for range n {
			out = append(out, Example{Text: a, Label: norm.Label(a), Answer: a})
		}
	}
	return out
}

func TestRecordLabelSpace(t *testing.T) {
	norm := student.Normalizer{FoldCase: true, StripTrailingPeriod: true}
	rule := DefaultLabelRule()
	var spread []string // 60 answers whose "summary" never repeats
	for i := range 60 {
		spread = append(spread, fmt.Sprintf(`{"kind": "spam", "summary": "note %d"}`, i))
	}
	var keys []string // 40 answers of 20 key sets
	for i := range 40 {
		keys = append(keys, fmt.Sprintf(`{"kind": "spam", "k%d": true}`, i%20))
	}
	for _, tc := range []struct {
		name     string
		examples []Example
		// want, for a closed space: heads as "path[labels]" (tags heads
		// "path{labels}"), order, surfaces and coverage.
		heads    []string
		order    []string
		surface  []string
		coverage float64
		reason   string // for an open-ended one
	}{
		{
			name: "stable keys, key order and case vary",
			examples: append(append(append(records(30, `{"spam": true, "kind": "Spam"}`),
				records(10, `{"kind": "SPAM", "spam": true}`)...),
				records(35, `{"spam": false, "kind": "easy_ham"}`)...),
				records(2, `{"spam": false, "kind": "easy_ham", "extra": 1}`)...), // another key set: outside
			heads:    []string{`spam[true false]`, `kind["spam" "easy_ham"]`},
			order:    []string{"spam", "kind"},
			surface:  []string{"true", "false", `"Spam"`, `"easy_ham"`},
			coverage: 75.0 / 77,
		},
		{
			name: "a rare value is outside its head, a one-value field is a one-class head",
			examples: append(append(records(20, `{"v": 2, "kind": "a"}`, `{"v": 2.0, "kind": "b"}`),
				records(2, `{"v": 2, "kind": "rare"}`)...),
				records(1, `{"kind": "a", "v": 2}`)...),
			heads:    []string{`v[2]`, `kind["a" "b"]`},
			order:    []string{"v", "kind"},
			surface:  []string{"2", `"a"`, `"b"`},
			coverage: 41.0 / 43,
		},
		{
			name: "a tags field is a head of tags, sorted; a rare tag is outside it",
			examples: append(records(10,
				`{"topic": "billing", "tags": ["Refund", "urgent"]}`,
				`{"topic": "billing", "tags": []}`,
				`{"topic": "shipping", "tags": ["late", "urgent", "URGENT"]}`,
				`{"topic": "shipping", "tags": ["late"]}`),
				records(1, `{"topic": "billing", "tags": ["rare"]}`)...),
			heads:    []string{`topic["billing" "shipping"]`, `tags{"late" "refund" "urgent"}`},
			order:    []string{"topic", "tags"},
			surface:  []string{`"billing"`, `"shipping"`, `"late"`, `"Refund"`, `"urgent"`},
			coverage: 40.0 / 41,
		},
		{
			name:     "a field with open-ended values",
			examples: records(1, spread...),
			reason:   `field "summary" is open-ended: 60 distinct values in 60 pairs; values seen at least 3 times cover 0% of pairs (need 90%)`,
		},
		{
			name:     "open-ended tags",
			examples: records(1, tagsOpen(50)...),
			reason:   `field "tags" is open-ended: 100 distinct tags in 50 pairs`,
		},
		{
			name:     "no stable key set",
			examples: records(1, keys...),
			reason:   "answers are JSON objects without a stable set of keys: the most frequent, {k0, kind}, is that of 5% of pairs (need 90%)",
		},
		{
			name: "fields closed one by one, not together",
			examples: append(records(30, `{"a": "x", "b": "y"}`, `{"a": "z", "b": "w"}`),
				append(records(2, `{"a": "x1", "b": "y"}`, `{"a": "x2", "b": "y"}`, `{"a": "x3", "b": "y"}`),
					records(2, `{"a": "x", "b": "y1"}`, `{"a": "x", "b": "y2"}`, `{"a": "x", "b": "y3"}`)...)...),
			reason: "answers are JSON objects whose fields' closed sets of values together cover 83% of pairs (need 90%)",
		},
		{
			name:     "one record",
			examples: records(20, `{"ok": true, "tags": ["A"]}`, `{"tags": ["a"], "ok": true}`),
			reason:   `the teacher gave one answer ({"ok":true,"tags":["A"]}) to every pair: nothing to learn`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := BuildLabelSpace(tc.examples, rule, norm)
			if tc.reason != "" {
				if !s.OpenEnded || !strings.Contains(s.Reason, tc.reason) {
					t.Errorf("open-ended %v, reason %q; want %q", s.OpenEnded, s.Reason, tc.reason)
				}
				return
			}
			if s.OpenEnded {
				t.Fatalf("open-ended: %s", s.Reason)
			}
			var heads []string
			for _, h := range s.Heads {
				open, end := "[", "]"
				if h.Tags {
					open, end = "{", "}"
				}
				heads = append(heads, h.Path+open+strings.Join(s.Labels[h.Start:h.End], " ")+end)
			}
			if !reflect.DeepEqual(heads, tc.heads) || !reflect.DeepEqual(s.Order, tc.order) || !reflect.DeepEqual(s.Surface, tc.surface) {
				t.Errorf("heads %q order %q surface %q; want %q, %q, %q", heads, s.Order, s.Surface, tc.heads, tc.order, tc.surface)
			}
			if !near(s.Coverage, tc.coverage) {
				t.Errorf("coverage %v, want %v", s.Coverage, tc.coverage)
			}
			if err := (ModelConfig{Buckets: 2, Dim: 1, Classes: len(s.Labels), Heads: s.Heads}).Validate(); err != nil {
				t.Errorf("heads do not make a model: %v", err)
			}
		})
	}
}

// tagsOpen is n records whose tags are new in each.
func tagsOpen(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf(`{"topic": "x", "tags": ["t%d", "u%d"]}`, i, i))
	}
	return out
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestPlainSpaceBesideRecords: a domain whose answers are mostly plain text
// keeps the plain label space, its few JSON answers labels like any other.
func TestPlainSpaceBesideRecords(t *testing.T) {
	ex := append(records(10, "Spam.", "ham"), records(1, `{"kind": "spam"}`)...)
	s := BuildLabelSpace(ex, DefaultLabelRule(), student.Normalizer{FoldCase: true, StripTrailingPeriod: true})
	if s.OpenEnded || s.Heads != nil || s.Order != nil || !reflect.DeepEqual(s.Labels, []string{"ham", "spam"}) || !near(s.Coverage, 20.0/21) {
		t.Errorf("space %+v", s)
	}
}
