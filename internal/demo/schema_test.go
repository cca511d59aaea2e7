package demo

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestSchemaCheck: an answer is valid when it is one JSON object with
// every field of the schema, of its type and from its enum, and no other;
// key order and spacing do not matter.
func TestSchemaCheck(t *testing.T) {
	for _, tc := range []struct {
		answer, err string // err: a part of the error, "" when valid
	}{
		{`{"spam":true,"kind":"spam"}`, ""},
		{`{"kind": "hard_ham", "spam": false}`, ""},
		{"{\n  \"spam\": false,\n  \"kind\": \"easy_ham\"\n}\n", ""},
		{`{"spam":true}`, `required field "kind" is missing`},
		{`{"spam":true,"kind":"spam","why":"x"}`, `field "why" is not in the schema`},
		{`{"spam":true,"kind":"phishing"}`, `"phishing" is not one of easy_ham, hard_ham, spam`},
		{`{"spam":"true","kind":"spam"}`, `field "spam": true is not a boolean`},
		{`{"spam":true,"kind":1}`, `field "kind": 1 is not a string`},
		{`{"spam":true,"spam":false,"kind":"spam"}`, `field "spam" appears twice`},
		{`{"spam":true,"kind":"spam"} {}`, "data after the object"},
		{`{"spam":true,"kind":"spam"`, "not JSON"},
		{"spam", "not a JSON object"},
		{"```json\n{\"spam\":true,\"kind\":\"spam\"}\n```", "not a JSON object"},
		{`[{"spam":true,"kind":"spam"}]`, "not a JSON object"},
		{"", "not a JSON object"},
	} {
		_, err := spamKindSchema.check(tc.answer)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("check(%q): %v, want valid", tc.answer, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("check(%q): %v, want an error with %q", tc.answer, err, tc.err)
		}
	}
}

// TestJSONSchema: the schema sent is OpenAI's strict subset: every
// property required, no others allowed.
func TestJSONSchema(t *testing.T) {
	b, err := json.Marshal(spamKindSchema.jsonSchema())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"additionalProperties":false,"properties":{"kind":{"enum":["easy_ham","hard_ham","spam"],"type":"string"},"spam":{"type":"boolean"}},"required":["spam","kind"],"type":"object"}`
	if string(b) != want {
		t.Errorf("schema %s\nwant   %s", b, want)
	}
}

func TestFieldsEqual(t *testing.T) {
	label := `{"spam":false,"kind":"hard_ham"}`
	for _, tc := range []struct {
		answer string
		want   map[string]bool
	}{
		{`{"kind": "hard_ham", "spam": false}`, map[string]bool{"spam": true, "kind": true}},
		{`{"spam":false,"kind":"easy_ham"}`, map[string]bool{"spam": true, "kind": false}},
		{`{"spam":false}`, map[string]bool{"spam": true, "kind": false}},
		{`not json`, map[string]bool{"spam": false, "kind": false}},
	} {
		if got := fieldsEqual(tc.answer, label); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("fieldsEqual(%s) = %v, want %v", tc.answer, got, tc.want)
		}
	}
}

// TestSummarizeStructured counts valid answers and the student's fields
// from the trace.
func TestSummarizeStructured(t *testing.T) {
	yes, no := true, false
	label := `{"spam":true,"kind":"spam"}`
	trace := []Request{
		{Domain: "j", Route: "teacher", Valid: &yes, Answer: label, Label: label, Correct: true},
		{Domain: "j", Route: "student", Valid: &yes, Answer: label, Label: label, Correct: true},
		{Domain: "j", Route: "student", Valid: &yes, Answer: `{"spam":true,"kind":"hard_ham"}`, Label: label},
		{Domain: "j", Route: "student-fallback", Valid: &no, Answer: `{"spam":true}`, Label: label},
		{Domain: "j", Route: "error"},
		{Domain: "other", Route: "student", Valid: &no},
	}
	got := summarizeStructured("j", spamKindSchema, trace)
	want := &StructuredSummary{Schema: "spam_kind", Answers: 4, Valid: 3, StudentAnswers: 3, StudentValid: 2,
		StudentFields: map[string]float64{"spam": 1, "kind": 1.0 / 3}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("summarizeStructured = %+v, want %+v", got, want)
	}
}
