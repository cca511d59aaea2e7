package openai

// This file writes the response objects Understudy produces itself, for
// student answers: chat and text completions, their server-sent stream
// chunks, and JSON strings, appended to a byte slice without reflection.

import (
	"iter"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Completion is one answer: everything its response object, or its stream
// of chunks, is written from. It holds no request memory, so a stream
// writer may keep it past a handler.
type Completion struct {
	// ID is the object's id ("chatcmpl-…", "cmpl-…").
	ID string
	// Chat is true for a chat completion, false for a legacy text
	// completion.
	Chat    bool
	Created int64 // Unix seconds
	Model   string
	// Fingerprint is the system_fingerprint.
	Fingerprint string
	// PromptTokens and CompletionTokens are the usage reported.
	PromptTokens, CompletionTokens int
	// IncludeUsage is stream_options.include_usage: every chunk carries
	// "usage":null and a ChunkUsage chunk carries the usage.
	IncludeUsage bool
}

// AppendJSON appends the non-streamed response object answering text.
func (c *Completion) AppendJSON(dst []byte, text string) []byte {
	if c.Chat {
		dst = c.appendHead(dst, "chat.completion")
		dst = append(dst, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
		dst = AppendString(dst, text)
		dst = append(dst, `,"refusal":null},"logprobs":null,"finish_reason":"stop"}]`...)
	} else {
		dst = c.appendHead(dst, "text_completion")
		dst = append(dst, `,"choices":[{"text":`...)
		dst = AppendString(dst, text)
		dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":"stop"}]`...)
	}
	dst = append(dst, `,"usage":`...)
	dst = c.appendUsage(dst)
	return c.appendTail(dst)
}

// ChunkKind is what a stream chunk carries.
type ChunkKind int

// Kinds of stream chunk, in the order a stream sends them.
const (
	// ChunkRole opens a chat stream: the assistant role, empty content.
	// Text completion streams have none.
	ChunkRole ChunkKind = iota
	// ChunkContent carries one piece of the answer.
	ChunkContent
	// ChunkStop is an empty delta with finish_reason "stop".
	ChunkStop
	// ChunkUsage has no choices and the usage, when IncludeUsage.
	ChunkUsage
)

// AppendChunk appends one server-sent event, "data: {…}\n\n", carrying a
// chunk of kind; piece is the ChunkContent's text.
func (c *Completion) AppendChunk(dst []byte, kind ChunkKind, piece string) []byte {
	dst = append(dst, "data: "...)
	if c.Chat {
		dst = c.appendHead(dst, "chat.completion.chunk")
		switch kind {
		case ChunkRole:
			dst = append(dst, `,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
		case ChunkContent:
			dst = append(dst, `,"choices":[{"index":0,"delta":{"content":`...)
			dst = AppendString(dst, piece)
			dst = append(dst, `},"logprobs":null,"finish_reason":null}]`...)
		case ChunkStop:
			dst = append(dst, `,"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]`...)
		}
	} else {
		dst = c.appendHead(dst, "text_completion")
		switch kind {
		case ChunkContent:
			dst = append(dst, `,"choices":[{"text":`...)
			dst = AppendString(dst, piece)
			dst = append(dst, `,"index":0,"logprobs":null,"finish_reason":null}]`...)
		case ChunkStop:
			dst = append(dst, `,"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]`...)
		}
	}
	switch {
	case kind == ChunkUsage:
		dst = append(dst, `,"choices":[],"usage":`...)
		dst = c.appendUsage(dst)
	case c.IncludeUsage:
		dst = append(dst, `,"usage":null`...)
	}
	dst = c.appendTail(dst)
	return append(dst, "\n\n"...)
}

// PieceSize is the most bytes of an answer one stream chunk carries.
const PieceSize = 16

// Pieces splits an answer into the pieces a stream sends it in, the way a
// teacher streams tokens: a piece ends after a comma, so that each member
// of a JSON object after the first starts a piece of its own, or once it
// holds PieceSize bytes, at the last rune boundary that fits (a rune is
// never cut, so each piece is text of its own). A short plain label, such
// as "spam", is one piece, as is an empty answer. The pieces put back
// together are the answer, byte for byte.
func Pieces(text string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if text == "" {
			yield("")
			return
		}
		for text != "" {
			n := min(len(text), PieceSize)
			if i := strings.IndexByte(text[:n], ','); i >= 0 {
				n = i + 1
			}
			for n < len(text) && n > 1 && !utf8.RuneStart(text[n]) {
				n--
			}
			if !yield(text[:n]) {
				return
			}
			text = text[n:]
		}
	}
}

// Done is the event that ends a stream.
const Done = "data: [DONE]\n\n"

// appendHead appends `{"id":…,"object":…,"created":…,"model":…`.
func (c *Completion) appendHead(dst []byte, object string) []byte {
	dst = append(dst, `{"id":`...)
	dst = AppendString(dst, c.ID)
	dst = append(dst, `,"object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, c.Created, 10)
	dst = append(dst, `,"model":`...)
	return AppendString(dst, c.Model)
}

func (c *Completion) appendTail(dst []byte) []byte {
	dst = append(dst, `,"system_fingerprint":`...)
	dst = AppendString(dst, c.Fingerprint)
	return append(dst, '}')
}

func (c *Completion) appendUsage(dst []byte) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.PromptTokens), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.CompletionTokens), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(c.PromptTokens+c.CompletionTokens), 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s to dst as a JSON string literal, escaped as
// encoding/json escapes it but for HTML characters, which it leaves as
// they are. Invalid UTF-8 is written as U+FFFD.
func AppendString(dst []byte, s string) []byte {
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
