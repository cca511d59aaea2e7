package gateway

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/understudy-dev/understudy/storage"
)

// PairLog receives the pairs the gateway captures. Log must not block; it
// returns false when the pair was dropped (and counted).
type PairLog interface {
	Log(p storage.Pair) bool
}

var _ PairLog = (*storage.DB)(nil)

// answer is what the gateway keeps of a teacher's answer.
type answer struct {
	text                           string
	promptTokens, completionTokens int
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

// parseAnswer reads a non-streamed answer body. ok is false when it holds no
// whole text answer (a tool call, a refusal, an answer cut off at
// max_tokens, something unexpected).
func parseAnswer(body []byte) (a answer, ok bool) {
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
		a.text = *c.Message.Content
	case c.Text != nil:
		a.text = *c.Text
	default:
		return a, false
	}
	if w.Usage != nil {
		a.promptTokens, a.completionTokens = w.Usage.PromptTokens, w.Usage.CompletionTokens
	}
	return a, true
}

// streamCapture rebuilds an answer from the SSE events the relay passes it.
type streamCapture struct {
	text  strings.Builder
	usage answer
	seen  bool // a chunk with text was seen
	bad   bool // a chunk could not be read, or the answer was cut off: it is not kept
}

var dataPrefix = []byte("data:")

// line takes one line of the event stream.
func (c *streamCapture) line(l []byte) {
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
		c.usage.promptTokens, c.usage.completionTokens = w.Usage.PromptTokens, w.Usage.CompletionTokens
	}
}

func (c *streamCapture) answer() (answer, bool) {
	a := c.usage
	a.text = c.text.String()
	return a, c.seen && !c.bad
}

// logPair hands an eligible request's answer, with its label, to the pair
// log.
func (s *Server) logPair(info *reqInfo, r *Request, a answer, label string, stream bool) {
	if s.pairs == nil || r == nil || r.Ineligible != "" {
		return
	}
	p := storage.Pair{
		Time:             info.start,
		Domain:           info.domain,
		Model:            r.Model,
		Input:            r.Input,
		System:           r.System,
		Answer:           a.text,
		Label:            label,
		PromptTokens:     a.promptTokens,
		CompletionTokens: a.completionTokens,
		TeacherLatency:   info.teacherTime,
		Stream:           stream,
	}
	if s.cfg.Storage.KeepRequests {
		p.Messages = r.Messages
	}
	if p.Label == "" {
		return
	}
	s.pairs.Log(p)
}
