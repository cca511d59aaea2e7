package openai

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"
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
//
// It reads with fastjson, as the request parsers do, and takes what
// encoding/json would take into answerWire: malformed JSON or a known
// field of the wrong JSON type (in any choice) is no answer. Unlike
// encoding/json, keys match exactly (as OpenAI sends them) and a duplicated
// key counts by its first value. This runs once per relayed answer: it
// costs a fifth of encoding/json's time (BenchmarkParseAnswer).
func ParseAnswer(body []byte) (a Answer, ok bool) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil || v.Type() == fastjson.TypeNull {
		return a, false
	}
	o, err := v.Object()
	if err != nil {
		return a, false
	}
	choices := o.Get("choices")
	if !nullOr(choices, fastjson.TypeArray) {
		return a, false
	}
	var first *fastjson.Value
	if choices != nil && choices.Type() == fastjson.TypeArray {
		cs, _ := choices.Array()
		for i, c := range cs {
			if !wireChoice(c) {
				return a, false
			}
			if i == 0 {
				first = c
			}
		}
	}
	usage := o.Get("usage")
	if !nullOr(usage, fastjson.TypeObject) || !wireInt(usage, "prompt_tokens") || !wireInt(usage, "completion_tokens") {
		return a, false
	}
	if first == nil {
		return a, false
	}
	// The types are checked: what is not absent nor null is a string.
	if fr := first.Get("finish_reason"); !absent(fr) && string(fr.GetStringBytes()) != "stop" {
		return a, false // cut off (length), filtered: see complete
	}
	text := first.Get("message")
	if text = text.Get("content"); absent(text) {
		text = first.Get("text")
	}
	if absent(text) {
		return a, false
	}
	a.Text = validUTF8(string(text.GetStringBytes()))
	if !absent(usage) {
		a.PromptTokens, a.CompletionTokens = wireIntValue(usage.Get("prompt_tokens")), wireIntValue(usage.Get("completion_tokens"))
	}
	return a, true
}

// nullOr reports whether v is absent, null or of type t: what encoding/json
// decodes into a pointer, slice or struct field of that kind.
func nullOr(v *fastjson.Value, t fastjson.Type) bool {
	return v == nil || v.Type() == fastjson.TypeNull || v.Type() == t
}

// wireChoice reports whether a choice's known fields have answerWire's
// types.
func wireChoice(c *fastjson.Value) bool {
	if !nullOr(c, fastjson.TypeObject) || !wireInt(c, "index") {
		return false
	}
	for _, k := range [...]string{"message", "delta"} {
		m := c.Get(k)
		if !nullOr(m, fastjson.TypeObject) || !nullOr(m.Get("content"), fastjson.TypeString) {
			return false
		}
	}
	return nullOr(c.Get("text"), fastjson.TypeString) && nullOr(c.Get("finish_reason"), fastjson.TypeString)
}

// wireInt reports whether o's field k is absent, null or an integer that
// fits an int, as encoding/json decodes into an int.
func wireInt(o *fastjson.Value, k string) bool {
	v := o.Get(k)
	if v == nil || v.Type() == fastjson.TypeNull {
		return true
	}
	if v.Type() != fastjson.TypeNumber {
		return false
	}
	_, ok := intOf(v)
	return ok
}

// intOf is a JSON number as encoding/json reads it into an int: an integer
// literal that fits, "-0" included.
func intOf(v *fastjson.Value) (int, bool) {
	if n, err := v.Int(); err == nil {
		return n, true // the common case, without allocating
	}
	n, err := strconv.ParseInt(v.String(), 10, 0)
	return int(n), err == nil
}

// wireIntValue is a number wireInt accepted, 0 for none.
func wireIntValue(v *fastjson.Value) int {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return 0
	}
	n, _ := intOf(v)
	return n
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
