package openai

import (
	"fmt"
	"strings"

	"github.com/valyala/fastjson"
)

// Responses holds what the gateway reads of a Responses API request
// beyond what every request has.
type Responses struct {
	// Store is the request's store (default true): whether the response
	// may be read back and continued.
	Store bool
	// PreviousResponseID continues an earlier response's conversation.
	PreviousResponseID string
	// Items is the input as an array of input items (a string input is
	// one user message): what a student-made response keeps of its
	// conversation.
	Items []byte
	// Instructions, Text and Metadata are the request's values as sent
	// (nil when absent), echoed in a student's Response object.
	Instructions, Text, Metadata []byte
}

// ParseResponsesRequest reads a POST /v1/responses body with
// ParseChatRequest's errors. The task is the model with instructions and
// the text of system or developer input items; the student's input is the
// text of the other input items, as with chat's messages.
//
// A request no student may answer says why in Ineligible: tools, a
// previous_response_id or conversation (the context lives at the teacher;
// the gateway inlines a student-made one itself), background, a prompt
// template, non-text input or input items other than messages, and
// logprobs.
func ParseResponsesRequest(body []byte) (*Request, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	o, err := parseObject(p, body)
	if err != nil {
		return nil, err
	}
	r := &Request{Endpoint: ResponsesAPI}
	r.Store = true
	prompt := o.Get("prompt")
	if absent(prompt) || !absent(o.Get("model")) {
		if r.Model, err = requireModel(o); err != nil {
			return nil, err
		}
	}
	if r.Stream, err = boolParam(o.Get("stream"), "stream"); err != nil {
		return nil, err
	}
	if st := o.Get("store"); !absent(st) {
		if r.Store, err = boolParam(st, "store"); err != nil {
			return nil, err
		}
	}
	background, err := boolParam(o.Get("background"), "background")
	if err != nil {
		return nil, err
	}
	if v := o.Get("previous_response_id"); !absent(v) {
		if v.Type() != fastjson.TypeString {
			return nil, typeError("previous_response_id", "a string", v)
		}
		r.PreviousResponseID = validUTF8(string(v.GetStringBytes()))
	}
	var system strings.Builder
	if v := o.Get("instructions"); !absent(v) {
		if v.Type() != fastjson.TypeString {
			// Instructions may also be a list of input items when a
			// prompt template is used: not a task a student can learn.
			r.Ineligible = "instructions_not_string"
		} else {
			system.Write(v.GetStringBytes())
			r.Instructions = v.MarshalTo(nil)
		}
	}
	if err := readTask(o, r); err != nil {
		return nil, err
	}
	if v := o.Get("metadata"); !absent(v) {
		r.Metadata = v.MarshalTo(nil)
	}
	input := o.Get("input")
	if absent(input) && absent(prompt) && r.PreviousResponseID == "" {
		return nil, invalidRequest("input", "Missing required parameter: 'input'.")
	}
	text, media, err := responsesInput(input, &system, r)
	if err != nil {
		return nil, err
	}
	r.System, r.Input = validUTF8(system.String()), validUTF8(text)
	format := o.Get("text")
	if !absent(format) {
		if _, err := format.Object(); err != nil {
			return nil, typeError("text", "an object", format)
		}
		r.Text = format.MarshalTo(nil)
		if r.Shape, r.Schema, err = answerShape(format.Get("format"), "text.format", ""); err != nil {
			return nil, err
		}
	}
	tools := hasValue(o.Get("tools"))
	if tools {
		r.Shape += "+tools"
	}
	topLogprobs, err := intParam(o.Get("top_logprobs"), "top_logprobs")
	if err != nil {
		return nil, err
	}
	switch {
	case r.Ineligible != "":
	case media != "":
		r.Ineligible = media
	case tools:
		r.Ineligible = "tools"
	case r.PreviousResponseID != "":
		r.Ineligible = "previous_response_id"
	case hasValue(o.Get("conversation")):
		r.Ineligible = "conversation"
	case background:
		r.Ineligible = "background"
	case !absent(prompt):
		r.Ineligible = "prompt"
	case topLogprobs > 0 || includes(o.Get("include"), "message.output_text.logprobs"):
		r.Ineligible = "logprobs"
	}
	stripTask(o, r)
	return r, nil
}

// responsesInput reads input, a string or an array of input items: the
// text of system and developer messages goes to system, that of the
// others is returned. It sets r.Items and r.Messages. media names the
// first input no student can take: a part that is not text, or an item
// that is not a message (a function call's output, a reasoning item, an
// item reference).
func responsesInput(v *fastjson.Value, system *strings.Builder, r *Request) (text, media string, err error) {
	var msgs []byte // r.Messages, as chat messages
	msgs = append(msgs, '[')
	addMessage := func(role string, content []byte) {
		if len(msgs) > 1 {
			msgs = append(msgs, ',')
		}
		msgs = append(msgs, `{"role":`...)
		msgs = AppendString(msgs, role)
		msgs = append(msgs, `,"content":`...)
		msgs = AppendString(msgs, string(content))
		msgs = append(msgs, '}')
	}
	if system.Len() > 0 {
		addMessage("system", []byte(system.String()))
	}
	var input strings.Builder
	switch {
	case absent(v):
		r.Items = []byte("[]")
	case v.Type() == fastjson.TypeString:
		b := v.GetStringBytes()
		input.Write(b)
		r.Items = AppendString(append([]byte(nil), `[{"role":"user","content":`...), string(b))
		r.Items = append(r.Items, "}]"...)
		addMessage("user", b)
	case v.Type() == fastjson.TypeArray:
		items, _ := v.Array()
		for i, it := range items {
			io, err := it.Object()
			if err != nil {
				return "", "", typeError(fmt.Sprintf("input[%d]", i), "an object", it)
			}
			if _, dup := duplicateKey(io); dup {
				return "", "", noDuplicateKey(io, fmt.Sprintf("input[%d]", i))
			}
			kind, role := io.Get("type"), io.Get("role")
			if !absent(kind) && kind.Type() != fastjson.TypeString {
				return "", "", typeError(fmt.Sprintf("input[%d].type", i), "a string", kind)
			}
			if k := string(kind.GetStringBytes()); k != "" && k != "message" {
				if media == "" {
					media = "input_" + validUTF8(k)
				}
				continue
			}
			if absent(role) || role.Type() != fastjson.TypeString {
				return "", "", invalidRequest(fmt.Sprintf("input[%d].role", i), "Missing required parameter: 'input[%d].role'.", i)
			}
			t, m, err := contentText(io.Get("content"), "input", i)
			if err != nil {
				return "", "", err
			}
			if m != "" && media == "" {
				media = m
			}
			rb := string(role.GetStringBytes())
			dst := &input
			if rb == "system" || rb == "developer" {
				dst = system
			}
			if dst.Len() > 0 && len(t) > 0 {
				dst.WriteByte('\n')
			}
			dst.Write(t)
			addMessage(validUTF8(rb), t)
		}
		r.Items = v.MarshalTo(nil)
	default:
		return "", "", typeError("input", "a string or an array", v)
	}
	r.Messages = append(msgs, ']')
	return input.String(), media, nil
}

// includes reports whether v, an array of strings, holds s.
func includes(v *fastjson.Value, s string) bool {
	if v == nil {
		return false
	}
	a, err := v.Array()
	if err != nil {
		return false
	}
	for _, e := range a {
		if string(e.GetStringBytes()) == s {
			return true
		}
	}
	return false
}
