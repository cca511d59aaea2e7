package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Request is what the gateway learns from an OpenAI request body before it
// decides where the request goes. Its strings are copies: it outlives the
// fasthttp request it came from.
type Request struct {
	Model        string
	Stream       bool
	IncludeUsage bool
	// Task is metadata.task, "" when absent.
	Task string
	// System is the text of the system (or developer) messages.
	System string
	// Input is the text of the other messages, the student's input.
	Input string
	// Ineligible, when not "", says why no student may answer this request
	// (tools, image_input, audio_input, file_input, n>1, logprobs).
	Ineligible string
	// Messages is the request's messages array as sent (chat only).
	Messages json.RawMessage
	// Chat is true for chat completions, false for legacy completions.
	Chat bool
}

// chatWire holds the fields of a chat completion request the gateway reads.
// Every other field passes through to the teacher untouched, since the
// original body is forwarded.
type chatWire struct {
	Model         *string         `json:"model"`
	Messages      json.RawMessage `json:"messages"`
	Stream        *bool           `json:"stream"`
	StreamOptions *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
	Metadata  map[string]string `json:"metadata"`
	N         *int              `json:"n"`
	Logprobs  *bool             `json:"logprobs"`
	Tools     json.RawMessage   `json:"tools"`
	Functions json.RawMessage   `json:"functions"`
}

type messageWire struct {
	Role    *string         `json:"role"`
	Content json.RawMessage `json:"content"`
}

type partWire struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// ParseChatRequest reads a /v1/chat/completions body. Malformed JSON, wrong
// JSON types and missing model or messages are errors carrying status 400
// and the offending parameter.
func ParseChatRequest(body []byte) (*Request, error) {
	var w chatWire
	if err := decode(body, &w, ""); err != nil {
		return nil, err
	}
	if w.Model == nil || *w.Model == "" {
		return nil, invalidRequest("model", "you must provide a model parameter")
	}
	if len(w.Messages) == 0 || string(w.Messages) == "null" {
		return nil, invalidRequest("messages", "Missing required parameter: 'messages'.")
	}
	if w.Messages[0] != '[' {
		return nil, invalidRequest("messages", "Invalid type for 'messages': expected an array, but got %s instead.", jsonValueKind(w.Messages[0]))
	}
	var messages []messageWire
	if err := decode(w.Messages, &messages, "messages"); err != nil {
		return nil, err
	}
	if len(messages) == 0 {
		return nil, invalidRequest("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
	}
	r := &Request{Model: *w.Model, Task: w.Metadata["task"], Messages: w.Messages, Chat: true}
	if w.Stream != nil {
		r.Stream = *w.Stream
	}
	if w.StreamOptions != nil && w.StreamOptions.IncludeUsage != nil {
		r.IncludeUsage = *w.StreamOptions.IncludeUsage
	}
	var system, input strings.Builder
	for i, m := range messages {
		if m.Role == nil {
			return nil, invalidRequest(fmt.Sprintf("messages[%d].role", i), "Missing required parameter: 'messages[%d].role'.", i)
		}
		text, media, err := contentText(m.Content)
		if err != nil {
			return nil, invalidRequest(fmt.Sprintf("messages[%d].content", i), "Invalid 'messages[%d].content': %v", i, err)
		}
		if media != "" && r.Ineligible == "" {
			r.Ineligible = media
		}
		dst := &input
		if *m.Role == "system" || *m.Role == "developer" {
			dst = &system
		}
		if dst.Len() > 0 && text != "" {
			dst.WriteByte('\n')
		}
		dst.WriteString(text)
	}
	r.System, r.Input = system.String(), input.String()
	switch {
	case r.Ineligible != "":
	case hasValue(w.Tools) || hasValue(w.Functions):
		r.Ineligible = "tools"
	case w.N != nil && *w.N > 1:
		r.Ineligible = "n>1"
	case w.Logprobs != nil && *w.Logprobs:
		r.Ineligible = "logprobs"
	}
	return r, nil
}

// completionWire holds the fields of a legacy completion request the
// gateway reads.
type completionWire struct {
	Model         *string         `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        *bool           `json:"stream"`
	N             *int            `json:"n"`
	BestOf        *int            `json:"best_of"`
	Logprobs      *int            `json:"logprobs"`
	Echo          *bool           `json:"echo"`
	StreamOptions *struct {
		IncludeUsage *bool `json:"include_usage"`
	} `json:"stream_options"`
}

// ParseCompletionRequest reads a /v1/completions body. Only a single string
// prompt is eligible for distillation.
func ParseCompletionRequest(body []byte) (*Request, error) {
	var w completionWire
	if err := decode(body, &w, ""); err != nil {
		return nil, err
	}
	if w.Model == nil || *w.Model == "" {
		return nil, invalidRequest("model", "you must provide a model parameter")
	}
	r := &Request{Model: *w.Model}
	if w.Stream != nil {
		r.Stream = *w.Stream
	}
	if w.StreamOptions != nil && w.StreamOptions.IncludeUsage != nil {
		r.IncludeUsage = *w.StreamOptions.IncludeUsage
	}
	if len(w.Prompt) > 0 && w.Prompt[0] == '"' {
		if err := json.Unmarshal(w.Prompt, &r.Input); err != nil {
			return nil, invalidRequest("prompt", "Invalid 'prompt': %v", err)
		}
	} else {
		r.Ineligible = "prompt_not_string"
	}
	switch {
	case r.Ineligible != "":
	case (w.N != nil && *w.N > 1) || (w.BestOf != nil && *w.BestOf > 1):
		r.Ineligible = "n>1"
	case w.Logprobs != nil:
		r.Ineligible = "logprobs"
	case w.Echo != nil && *w.Echo:
		r.Ineligible = "echo"
	}
	return r, nil
}

// decode unmarshals a request body (or, with prefix, a part of it), turning
// decoding errors into 400s that name the parameter.
func decode(body []byte, v any, prefix string) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		param := typeErr.Field
		if prefix != "" {
			param = strings.TrimSuffix(prefix+"[]."+param, ".")
		}
		if param == "" {
			return invalidRequest("", "The request body must be a JSON object.")
		}
		return invalidRequest(param, "Invalid type for '%s': expected %s, but got %s instead.", param, jsonKind(typeErr.Type.String()), typeErr.Value)
	}
	return invalidRequest("", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
}

// jsonValueKind names the JSON kind of a value starting with c.
func jsonValueKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// jsonKind names a Go type the way a JSON user thinks of it.
func jsonKind(goType string) string {
	goType = strings.TrimLeft(goType, "*")
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case goType == "int" || goType == "float64":
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	default:
		return "an object"
	}
}

// contentText returns the text of a message's content (a string, an array
// of parts, or null) and, if it holds a part no student can take, that
// part's kind.
func contentText(raw json.RawMessage) (text, media string, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", "", nil
	}
	switch raw[0] {
	case '"':
		// The body was validated as a whole: a string without escapes is
		// the bytes between its quotes (if they are valid UTF-8, which
		// encoding/json would otherwise repair).
		if s := raw[1 : len(raw)-1]; bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
			return string(s), "", nil
		}
		err = json.Unmarshal(raw, &text)
		return text, "", err
	case '[':
		var parts []partWire
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", "", errors.New("expected an array of content parts")
		}
		var b strings.Builder
		for _, p := range parts {
			switch p.Type {
			case "text", "input_text":
				if b.Len() > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(p.Text)
			case "image_url", "input_image":
				media = "image_input"
			case "input_audio":
				media = "audio_input"
			default:
				media = "file_input"
			}
		}
		return b.String(), media, nil
	default:
		return "", "", errors.New("expected a string or an array of content parts")
	}
}

func hasValue(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null" && string(raw) != "[]"
}
