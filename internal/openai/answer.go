package openai

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Answer is what Understudy keeps of a teacher's answer: its text and the
// token usage the teacher reported.
type Answer struct {
	Text                           string
	PromptTokens, CompletionTokens int
}

// answerWire reads the answer from a chat completion or a completion, or
// from one of their stream chunks.
type answerWire struct {
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// complete reports whether a finish_reason says the answer ended on its
// own. "length" (cut off at max_tokens) and "content_filter" answers are
// torn: a label read from them ("pe" for "personal") would teach the
// student wrong. A teacher that sends no finish_reason is taken at its word.
func complete(finishReason *string) bool {
	return finishReason == nil || *finishReason == "stop"
}

// ParseAnswer reads a non-streamed answer body, a chat completion or a
// completion. ok is false when it holds no whole text answer (a tool call,
// a refusal, an answer cut off at max_tokens, something unexpected).
func ParseAnswer(body []byte) (a Answer, ok bool) {
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

// StreamAnswer rebuilds the answer of a chat completion or completion
// event stream from its lines, handed over one at a time. The zero value
// is ready to use.
type StreamAnswer struct {
	text  strings.Builder
	usage Answer
	seen  bool // a chunk with text was seen
	bad   bool // a chunk could not be read, or the answer was cut off: it is not kept
}

var dataPrefix = []byte("data:")

// Line takes one line of the event stream.
func (c *StreamAnswer) Line(l []byte) {
	if c.bad || !bytes.HasPrefix(l, dataPrefix) {
		return
	}
	data := bytes.TrimSpace(l[len(dataPrefix):])
	if len(data) == 0 || data[0] != '{' {
		return // [DONE]
	}
	var w answerWire
	if err := json.Unmarshal(data, &w); err != nil {
		c.bad = true
		return
	}
	for _, ch := range w.Choices {
		if ch.Index != 0 {
			continue
		}
		if !complete(ch.FinishReason) {
			c.bad = true
		}
		switch {
		case ch.Delta.Content != nil:
			c.text.WriteString(*ch.Delta.Content)
			c.seen = true
		case ch.Text != nil:
			c.text.WriteString(*ch.Text)
			c.seen = true
		}
	}
	if w.Usage != nil {
		c.usage.PromptTokens, c.usage.CompletionTokens = w.Usage.PromptTokens, w.Usage.CompletionTokens
	}
}

// Discard gives up on the answer: a line of the stream went by unread
// (one too long to hold, say), so the text would be torn.
func (c *StreamAnswer) Discard() { c.bad = true }

// Answer returns the answer the lines carried. ok is false when they held
// no text, a chunk could not be read, the answer was cut off, or Discard
// was called.
func (c *StreamAnswer) Answer() (a Answer, ok bool) {
	a = c.usage
	a.Text = c.text.String()
	return a, c.seen && !c.bad
}
