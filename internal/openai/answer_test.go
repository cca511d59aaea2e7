package openai

import (
	"encoding/json"
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

// parseAnswerStd is ParseAnswer as it was with encoding/json: the
// reference its fastjson reading must agree with.
func parseAnswerStd(body []byte) (a Answer, ok bool) {
	var w answerWire
	if err := json.Unmarshal(body, &w); err != nil || len(w.Choices) == 0 {
		return a, false
	}
	c := w.Choices[0]
	if !complete(c.FinishReason) {
		return a, false
	}
	switch {
	case c.Message.Content != nil:
		a.Text = *c.Message.Content
	case c.Text != nil:
		a.Text = *c.Text
	default:
		return a, false
	}
	if w.Usage != nil {
		a.PromptTokens, a.CompletionTokens = w.Usage.PromptTokens, w.Usage.CompletionTokens
	}
	return a, true
}

// TestParseAnswerAsEncodingJSON compares ParseAnswer with encoding/json's
// reading on answers of every shape, and of wrong types.
func TestParseAnswerAsEncodingJSON(t *testing.T) {
	for _, body := range []string{
		`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"spam","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":0}}}`,
		`{"choices":[{"text":"ham","index":0,"finish_reason":"stop"}]}`,
		`{"choices":[{"message":{"content":"ham"}}]}`,
		`{"choices":[{"message":{"content":""},"finish_reason":"stop"}]}`,
		`{"choices":[{"message":{"content":"a\u00e9\n\"b\""},"finish_reason":"stop"}]}`,
		`{"choices":[{"message":{"content":"pe"},"finish_reason":"length"}]}`,
		`{"choices":[{"message":{"content":"x"},"finish_reason":null}]}`,
		`{"choices":[{"message":{"content":"x"},"finish_reason":1}]}`,
		`{"choices":[{"message":{"content":1},"finish_reason":"stop"}]}`,
		`{"choices":[{"message":{"content":["a"]},"finish_reason":"stop"}]}`,
		`{"choices":[{"message":null,"text":"t"}]}`,
		`{"choices":[{"message":"x"}]}`,
		`{"choices":[{"message":{"content":"a"}},{"message":{"content":2}}]}`,
		`{"choices":[{"message":{"content":"a"}},{"index":1.5}]}`,
		`{"choices":[{"message":{"content":"a"},"index":-0}]}`,
		`{"choices":[null]}`,
		`{"choices":[1]}`,
		`{"choices":{}}`,
		`{"choices":null}`,
		`{"choices":[]}`,
		`{}`,
		`[]`,
		`null`,
		`"x"`,
		`{"choices":[`,
		``,
		`{"choices":[{"message":{"content":"a"}}],"usage":null}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":null,"completion_tokens":3}}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":1.0}}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":1e2}}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":"1"}}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":[]}`,
		`{"choices":[{"message":{"content":"a"}}],"usage":{"prompt_tokens":99999999999999999999}}`,
		`{"choices":[{"delta":{"content":3},"message":{"content":"a"}}]}`,
	} {
		got, gotOK := ParseAnswer([]byte(body))
		want, wantOK := parseAnswerStd([]byte(body))
		if gotOK != wantOK || gotOK && got != want {
			t.Errorf("ParseAnswer(%s) = %+v, %v; encoding/json reads %+v, %v", body, got, gotOK, want, wantOK)
		}
	}
}

var benchAnswer = []byte(`{"id":"chatcmpl-123","object":"chat.completion","created":1700000000,"model":"teacher-sim","choices":[{"index":0,"message":{"role":"assistant","content":"billing","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":262,"completion_tokens":2,"total_tokens":264},"system_fingerprint":"fp_1"}`)

// BenchmarkParseAnswer reads a teacher's chat completion, as the gateway
// does once per relayed answer; std is encoding/json, for comparison.
func BenchmarkParseAnswer(b *testing.B) {
	for _, p := range []struct {
		name  string
		parse func([]byte) (Answer, bool)
	}{{"fastjson", ParseAnswer}, {"std", parseAnswerStd}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := p.parse(benchAnswer); !ok {
					b.Fatal("no answer")
				}
			}
		})
	}
}
