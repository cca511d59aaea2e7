package teachersim

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// This file holds the request side of the OpenAI wire format: the bodies
// the simulator reads. Its responses are written by internal/wire.

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
