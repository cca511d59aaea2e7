package openai

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestFineTuningWriter writes examples with and without kept messages,
// strings needing every kind of escape, and kept messages that are not an
// array of messages, against testdata/finetune.golden.jsonl: the lines a
// fine-tuning upload receives.
func TestFineTuningWriter(t *testing.T) {
	cases := []struct{ System, Input, Answer, Messages string }{
		{System: "Classify.", Input: "Buy now <b>&</b>", Answer: "spam"},
		{Input: "hello\nworld", Answer: "ham"},
		{System: "S \"q\" \\ \t\b\f\x01\x1f", Input: "sep \u2028\u2029 bad \xff utf8 ✓ 😀", Answer: "<ok>\r\n&amp;"},
		{System: "S", Input: "a b", Answer: "Positive.", Messages: "[\n {\"role\":\"system\",\"content\":\"S\"},\n {\"role\":\"user\",\"content\":\"a\"},\n {\"role\":\"user\",\"content\":\"b\"}\n]"},
		{Input: "x", Answer: "y <&>", Messages: "[ {\"role\": \"user\", \"content\": [ {\"type\": \"text\", \"text\": \"<b>\\u003c\\/ \\u2028 &\"} ], \"n\": 1.50e3 } ]"},
		{Input: "x", Answer: "y", Messages: `{"oops":1}`},
		{System: "s", Input: "x", Answer: "y", Messages: `[]`},
		{Input: "x", Answer: "y", Messages: `null`},
		{Input: "", Answer: ""},
	}
	var out bytes.Buffer
	w := NewFineTuningWriter(&out)
	for i, c := range cases {
		e := FineTuningExample{System: c.System, Input: c.Input, Answer: c.Answer}
		if c.Messages != "" {
			msgs, err := SplitMessages([]byte(c.Messages))
			if want := !strings.HasPrefix(c.Messages, "{"); (err == nil) != want {
				t.Errorf("example %d: SplitMessages(%s) = %v; want an error only for what is not an array", i, c.Messages, err)
			}
			e.Messages = msgs
		}
		if err := w.Write(e); err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
	}
	golden, err := os.ReadFile("testdata/finetune.golden.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	got, want := strings.SplitAfter(out.String(), "\n"), strings.SplitAfter(string(golden), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got)-1, len(want)-1, out.Bytes())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
		if line := strings.TrimSuffix(got[i], "\n"); line != "" && !json.Valid([]byte(line)) {
			t.Errorf("line %d is not JSON: %s", i, line)
		}
	}
}

// TestFineTuningWriterInvalidUTF8: kept messages holding bytes that are not
// UTF-8 (a client may send them raw in a JSON string) are written as
// U+FFFD, so the file uploads.
func TestFineTuningWriterInvalidUTF8(t *testing.T) {
	msgs, err := SplitMessages([]byte("[{\"role\":\"user\",\"content\":\"bad \xff\xfe byte\"}]"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := NewFineTuningWriter(&out).Write(FineTuningExample{Messages: msgs, Answer: "ok \xff"}); err != nil {
		t.Fatal(err)
	}
	if !utf8.Valid(out.Bytes()) || !json.Valid(bytes.TrimSpace(out.Bytes())) || !strings.Contains(out.String(), "bad \ufffd\ufffd byte") {
		t.Errorf("wrote %q, want valid UTF-8 JSON with U+FFFD for the bad bytes", out.Bytes())
	}
}

// TestFineTuningStructuredAnswer: a teacher's JSON answer is the
// assistant's content as the teacher wrote it: a string holding the
// record, key order, spacing and escapes unchanged, not an object.
func TestFineTuningStructuredAnswer(t *testing.T) {
	for _, answer := range []string{
		`{"spam":true,"kind":"phish"}`,
		"{ \"kind\" : \"ph\\u00efsh\",\n  \"meta\": {\"note\": \"<b>\\\"&\\\"</b>\"}, \"tags\": [\"b\", \"a\"] }",
		"```json\n{\"a\":1}\n```",
	} {
		var out bytes.Buffer
		if err := NewFineTuningWriter(&out).Write(FineTuningExample{System: "Triage.", Input: "x", Answer: answer}); err != nil {
			t.Fatal(err)
		}
		var line struct {
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(out.Bytes(), &line); err != nil || len(line.Messages) != 3 {
			t.Fatalf("%s: %v", out.Bytes(), err)
		}
		var content string
		last := line.Messages[2]
		if err := json.Unmarshal(last.Content, &content); err != nil || last.Role != "assistant" || content != answer {
			t.Errorf("assistant %s %s, want the string %q", last.Role, last.Content, answer)
		}
	}
}
