package openai

import (
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Answer
		ok         bool
	}{
		{"chat", `{"choices":[{"index":0,"message":{"role":"assistant","content":"spam"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1}}`,
			Answer{Text: "spam", PromptTokens: 12, CompletionTokens: 1}, true},
		{"completion", `{"choices":[{"text":"ham","index":0,"finish_reason":"stop"}]}`, Answer{Text: "ham"}, true},
		{"no finish_reason", `{"choices":[{"message":{"content":"ham"}}]}`, Answer{Text: "ham"}, true},
		{"cut off", `{"choices":[{"message":{"content":"pe"},"finish_reason":"length"}]}`, Answer{}, false},
		{"tool call", `{"choices":[{"message":{"content":null,"tool_calls":[{}]},"finish_reason":"stop"}]}`, Answer{}, false},
		{"no choices", `{"choices":[]}`, Answer{}, false},
		{"not JSON", `{"choices":[`, Answer{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseAnswer([]byte(tc.body))
			if ok != tc.ok || ok && got != tc.want {
				t.Errorf("ParseAnswer = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestStreamAnswer(t *testing.T) {
	chunk := func(choice string) string {
		return `data: {"object":"chat.completion.chunk","choices":[` + choice + `]}` + "\n"
	}
	whole := []string{
		chunk(`{"index":0,"delta":{"role":"assistant","content":""}}`), "\n",
		chunk(`{"index":0,"delta":{"content":"Pos"}}`), "\n",
		chunk(`{"index":1,"delta":{"content":"other choice"}}`), "\n",
		chunk(`{"index":0,"delta":{"content":"itive"}}`), "\n",
		chunk(`{"index":0,"delta":{},"finish_reason":"stop"}`), "\n",
		`data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}` + "\n", "\n",
		"data: [DONE]\n", "\n",
	}
	for _, tc := range []struct {
		name    string
		lines   []string
		discard bool
		want    Answer
		ok      bool
	}{
		{"chat", whole, false, Answer{Text: "Positive", PromptTokens: 9, CompletionTokens: 2}, true},
		{"completion", []string{`data: {"choices":[{"text":"ham","index":0}]}` + "\n", "data: [DONE]\n"}, false, Answer{Text: "ham"}, true},
		{"discarded", whole, true, Answer{}, false},
		{"cut off", []string{chunk(`{"index":0,"delta":{"content":"pe"},"finish_reason":"length"}`)}, false, Answer{}, false},
		{"torn chunk", []string{chunk(`{"index":0,"delta":{"content":"pe"}}`), `data: {"choices":[{"ind`}, false, Answer{}, false},
		{"no text", []string{chunk(`{"index":0,"delta":{"role":"assistant"}}`), "data: [DONE]\n"}, false, Answer{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c StreamAnswer
			for _, l := range tc.lines {
				c.Line([]byte(l))
			}
			if tc.discard {
				c.Discard()
			}
			got, ok := c.Answer()
			if ok != tc.ok || ok && got != tc.want {
				t.Errorf("Answer() = %+v, %v; want %+v, %v (lines %q)", got, ok, tc.want, tc.ok, strings.Join(tc.lines, ""))
			}
		})
	}
}
