package teachersim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// This file holds the OpenAI wire format: the request bodies the simulator
// reads, and appenders that write its responses without reflection.

type chatRequest struct {
	Model         string        `json:"model"`
	Messages      []chatMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions streamOptions `json:"stream_options"`
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
	*r = chatRequest{Messages: msgs[:0]}
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

// appendContent appends the text of a message content (a JSON string, an
// array of content parts, or null) to dst, text parts joined by "\n". ok is
// false for any other JSON value.
func appendContent(dst []byte, raw json.RawMessage) (_ []byte, ok bool) {
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
			if p.Type != "text" {
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

const hexDigits = "0123456789abcdef"

// appendString appends s to dst as a JSON string literal. Invalid UTF-8 is
// written as U+FFFD, as encoding/json does.
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

func appendUsage(dst []byte, prompt, completion int) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(completion), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt+completion), 10)
	return append(dst, '}')
}

// appendHead appends the fields every completion object and chunk starts
// with: `{"id":"<prefix><n>","object":"<object>","created":<unix>,"model":<model>`.
func appendHead(dst []byte, prefix string, n uint64, object string, created int64, model string) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, prefix...)
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	return appendString(dst, model)
}

const fingerprint = `"system_fingerprint":"fp_teachersim"`

// reply is one answered completion request, everything a response or a
// stream of chunks is written from. It holds no request memory, so a stream
// writer may keep it past the handler.
type reply struct {
	n                  uint64
	created            int64
	model, text        string
	promptTokens       int
	completionTokens   int
	includeUsage       bool
	completionEndpoint bool // /v1/completions rather than /v1/chat/completions
}

func (r *reply) appendChat(dst []byte) []byte {
	dst = appendHead(dst, "chatcmpl-sim-", r.n, "chat.completion", r.created, r.model)
	dst = append(dst, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	dst = appendString(dst, r.text)
	dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":`...)
	dst = appendUsage(dst, r.promptTokens, r.completionTokens)
	dst = append(dst, ',')
	dst = append(dst, fingerprint...)
	return append(dst, '}')
}

func (r *reply) appendCompletion(dst []byte) []byte {
	dst = appendHead(dst, "cmpl-sim-", r.n, "text_completion", r.created, r.model)
	dst = append(dst, `,"choices":[{"text":`...)
	dst = appendString(dst, r.text)
	dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":"stop"}],"usage":`...)
	dst = appendUsage(dst, r.promptTokens, r.completionTokens)
	dst = append(dst, ',')
	dst = append(dst, fingerprint...)
	return append(dst, '}')
}

// Kinds of stream chunk.
const (
	chunkRole    = iota // chat only: the assistant role, empty content
	chunkContent        // one piece of the answer
	chunkStop           // empty delta, finish_reason "stop"
	chunkUsage          // no choices, usage
)

// appendChunk appends one server-sent event carrying a chunk of r's stream.
func (r *reply) appendChunk(dst []byte, kind int, piece string) []byte {
	dst = append(dst, "data: "...)
	if r.completionEndpoint {
		dst = appendHead(dst, "cmpl-sim-", r.n, "text_completion", r.created, r.model)
		switch kind {
		case chunkContent:
			dst = append(dst, `,"choices":[{"text":`...)
			dst = appendString(dst, piece)
			dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":null}]`...)
		case chunkStop:
			dst = append(dst, `,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]`...)
		}
	} else {
		dst = appendHead(dst, "chatcmpl-sim-", r.n, "chat.completion.chunk", r.created, r.model)
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
	}
	if kind == chunkUsage {
		dst = append(dst, `,"choices":[],"usage":`...)
		dst = appendUsage(dst, r.promptTokens, r.completionTokens)
	} else if r.includeUsage {
		dst = append(dst, `,"usage":null`...)
	}
	dst = append(dst, ',')
	dst = append(dst, fingerprint...)
	return append(dst, "}\n\n"...)
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
