package teachersim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// This file holds the simulator's side of the OpenAI wire format: the
// request bodies it reads and the completions and stream chunks it writes.
// It shares no code with the gateway's (internal/openai) on purpose: the
// two are the halves of the test oracle, and a bug in a shared writer
// would pass unnoticed on both sides.

type chatRequest struct {
	Model          string          `json:"model"`
	Messages       []chatMessage   `json:"messages"`
	Stream         bool            `json:"stream"`
	StreamOptions  streamOptions   `json:"stream_options"`
	ResponseFormat json.RawMessage `json:"response_format"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// reset empties r for reuse while keeping its buffers. encoding/json decodes
// slice elements into the old values in place, so they are cleared too.
func (r *chatRequest) reset() {
	msgs := r.Messages[:cap(r.Messages)]
	for i := range msgs {
		msgs[i] = chatMessage{Content: msgs[i].Content[:0]}
	}
	*r = chatRequest{Messages: msgs[:0], ResponseFormat: r.ResponseFormat[:0]}
}

type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions streamOptions   `json:"stream_options"`
}

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

// isSystemRole reports whether a message role carries the system prompt.
func isSystemRole(role string) bool {
	return role == "system" || role == "developer"
}

// conversation collects the two texts a lookup reads from a conversation,
// by the one rule the chat and Responses endpoints share: the first
// system or developer message is the system prompt (later ones are
// ignored), and the texts of all other messages (user, assistant, tool),
// in order and joined by "\n", are the text the answer is looked up by.
type conversation struct {
	system, text         []byte
	haveSystem, haveText bool
}

// reset empties c for reuse while keeping its buffers.
func (c *conversation) reset() {
	*c = conversation{system: c.system[:0], text: c.text[:0]}
}

// setSystem makes system the system prompt, unless c has one already.
func (c *conversation) setSystem(system string) {
	if !c.haveSystem {
		c.haveSystem = true
		c.system = append(c.system[:0], system...)
	}
}

// add adds a message of role whose content is raw, a JSON string, an
// array of content parts or null, of which the parts of type textType
// carry text. ok is false for any other JSON value.
func (c *conversation) add(role string, raw json.RawMessage, textType string) (ok bool) {
	switch {
	case isSystemRole(role) && !c.haveSystem:
		c.haveSystem = true
		c.system, ok = appendContent(c.system, raw, textType)
	case isSystemRole(role):
		ok = true // only the first system message is the prompt
	default:
		if c.haveText {
			c.text = append(c.text, '\n')
		}
		c.haveText = true
		c.text, ok = appendContent(c.text, raw, textType)
	}
	return ok
}

// runes is the length in runes of the texts, from which the prompt's
// tokens are estimated.
func (c *conversation) runes() int {
	return utf8.RuneCount(c.system) + utf8.RuneCount(c.text)
}

// appendContent appends the text of a message content (a JSON string, an
// array of content parts, or null) to dst, the parts of type textType
// joined by "\n" and other parts skipped. ok is false for any other JSON
// value.
func appendContent(dst []byte, raw json.RawMessage, textType string) (_ []byte, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return dst, true
	}
	switch raw[0] {
	case '"':
		return appendJSONString(dst, raw)
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return dst, false
		}
		first := true
		for _, p := range parts {
			if p.Type != textType {
				continue
			}
			if !first {
				dst = append(dst, '\n')
			}
			first = false
			dst = append(dst, p.Text...)
		}
		return dst, true
	}
	return dst, false
}

// appendJSONString appends the value of the JSON string literal raw to dst.
// Literals without escapes, the common case, are copied without decoding.
func appendJSONString(dst, raw []byte) (_ []byte, ok bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return dst, false
	}
	body := raw[1 : len(raw)-1]
	if bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return append(dst, body...), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return dst, false
	}
	return append(dst, s...), true
}

// firstPrompt appends the text of a completion prompt, a string or an array
// whose first element is a string, to dst.
func firstPrompt(dst []byte, raw json.RawMessage) (_ []byte, ok bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return dst, false
	}
	switch raw[0] {
	case '"':
		return appendJSONString(dst, raw)
	case '[':
		var prompts []json.RawMessage
		if err := json.Unmarshal(raw, &prompts); err != nil || len(prompts) == 0 {
			return dst, false
		}
		return appendJSONString(dst, bytes.TrimSpace(prompts[0]))
	}
	return dst, false
}

// embeddingInputs decodes an embeddings input: a string or an array of
// strings.
func embeddingInputs(raw json.RawMessage) ([]string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, false
		}
		return []string{s}, true
	case '[':
		var in []string
		if err := json.Unmarshal(raw, &in); err != nil || len(in) == 0 {
			return nil, false
		}
		return in, true
	}
	return nil, false
}

// estimateTokens estimates the token count of a text of n runes: about four
// runes a token, at least one.
func estimateTokens(runes int) int {
	return max(1, (runes+3)/4)
}

// nextPiece returns the length of the first streamed piece of s: any leading
// whitespace and the word after it. Pieces split s into about one word each
// and concatenate back to s exactly.
func nextPiece(s string) int {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsSpace(r) {
			break
		}
		i += size
	}
	return i
}

// reply is one answer: everything its response object, or its stream of
// chunks, is written from. It holds no request memory, so a stream writer
// may keep it past a handler.
type reply struct {
	id   string // "chatcmpl-sim-…", "cmpl-sim-…"
	chat bool   // a chat completion, else a legacy text completion
	// created is in Unix seconds.
	created     int64
	model       string
	fingerprint string // system_fingerprint
	// promptTokens and completionTokens are the usage reported.
	promptTokens, completionTokens int
	// includeUsage is stream_options.include_usage: every chunk carries
	// "usage":null and a chunkUsage chunk carries the usage.
	includeUsage bool
}

// appendJSON appends the non-streamed response object answering text.
func (r *reply) appendJSON(dst []byte, text string) []byte {
	if r.chat {
		dst = r.appendHead(dst, "chat.completion")
		dst = append(dst, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
		dst = appendString(dst, text)
		dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":"stop"}]`...)
	} else {
		dst = r.appendHead(dst, "text_completion")
		dst = append(dst, `,"choices":[{"text":`...)
		dst = appendString(dst, text)
		dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":"stop"}]`...)
	}
	dst = append(dst, `,"usage":`...)
	dst = r.appendUsage(dst)
	return r.appendTail(dst)
}

// chunkKind is what a stream chunk carries.
type chunkKind int

// Kinds of stream chunk, in the order a stream sends them.
const (
	// chunkRole opens a chat stream: the assistant role, empty content.
	// Text completion streams have none.
	chunkRole chunkKind = iota
	// chunkContent carries one piece of the answer.
	chunkContent
	// chunkStop is an empty delta with finish_reason "stop".
	chunkStop
	// chunkUsage has no choices and the usage, when includeUsage.
	chunkUsage
)

// appendChunk appends one server-sent event, "data: {…}\n\n", carrying a
// chunk of kind; piece is the chunkContent's text.
func (r *reply) appendChunk(dst []byte, kind chunkKind, piece string) []byte {
	dst = append(dst, "data: "...)
	if r.chat {
		dst = r.appendHead(dst, "chat.completion.chunk")
		switch kind {
		case chunkRole:
			dst = append(dst, `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
		case chunkContent:
			dst = append(dst, `,"choices":[{"index":0,"delta":{"content":`...)
			dst = appendString(dst, piece)
			dst = append(dst, `},"logprobs":null,"finish_reason":null}]`...)
		case chunkStop:
			dst = append(dst, `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`...)
		}
	} else {
		dst = r.appendHead(dst, "text_completion")
		switch kind {
		case chunkContent:
			dst = append(dst, `,"choices":[{"text":`...)
			dst = appendString(dst, piece)
			dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":null}]`...)
		case chunkStop:
			dst = append(dst, `,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]`...)
		}
	}
	switch {
	case kind == chunkUsage:
		dst = append(dst, `,"choices":[],"usage":`...)
		dst = r.appendUsage(dst)
	case r.includeUsage:
		dst = append(dst, `,"usage":null`...)
	}
	dst = r.appendTail(dst)
	return append(dst, "\n\n"...)
}

// doneEvent is the event that ends a stream.
const doneEvent = "data: [DONE]\n\n"

// appendHead appends `{"id":…,"object":…,"created":…,"model":…`.
func (r *reply) appendHead(dst []byte, object string) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, r.id)
	dst = append(dst, `,"object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, r.created, 10)
	dst = append(dst, `,"model":`...)
	return appendString(dst, r.model)
}

func (r *reply) appendTail(dst []byte) []byte {
	dst = append(dst, `,"system_fingerprint":`...)
	dst = appendString(dst, r.fingerprint)
	return append(dst, '}')
}

func (r *reply) appendUsage(dst []byte) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.promptTokens), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.completionTokens), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(r.promptTokens+r.completionTokens), 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s to dst as a JSON string literal, escaped as
// encoding/json escapes it but for HTML characters, which it leaves as
// they are. Invalid UTF-8 is written as U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers
		// that take JSON for a script; escape them like encoding/json.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
