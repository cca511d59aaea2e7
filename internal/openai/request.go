package openai

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
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
	// Messages is the request's messages array, as sent but for
	// whitespace (chat); for the Responses API, its input as chat
	// messages, instructions first.
	Messages []byte
	// Endpoint is the API the request came on.
	Endpoint Endpoint
	// Shape is the shape of answer asked for, beyond plain text: "" for
	// text, "json_object", "json_schema:" and a hash of the schema, or
	// "format:" and a hash of an unknown type; "+tools" follows when
	// tools are offered. A domain's key includes
	// it, so that a student only answers requests of the shape it
	// learned.
	Shape string
	// Schema is the JSON schema the answer must follow when Shape is a
	// json_schema: response_format.json_schema.schema (chat) or
	// text.format.schema (Responses API), compact, as sent; Shape's hash
	// is of these bytes. It is nil for every other shape, and for a
	// json_schema format without a schema.
	Schema []byte
	// Forward, when not nil, is the body the teacher gets instead of the
	// client's: the client's without the metadata.task the gateway
	// consumed (and without metadata when nothing else was in it), since
	// OpenAI refuses chat metadata unless store is set.
	Forward []byte

	// The Responses API's own fields (see ParseResponsesRequest).
	Responses
}

// Endpoint is an API a request can come on.
type Endpoint uint8

// The APIs the gateway learns from.
const (
	Chat Endpoint = iota
	Completions
	ResponsesAPI
)

// parsers are reused across requests: a fastjson parser keeps its memory.
var parsers fastjson.ParserPool

// ParseChatRequest reads a /v1/chat/completions body. Malformed JSON, wrong
// JSON types and missing model or messages are errors: an *Error of type
// invalid_request_error naming the offending parameter, which OpenAI's API
// answers with status 400. Keys match exactly, as OpenAI's API matches
// them; every other field passes through to the teacher untouched, since
// the original body is forwarded.
func ParseChatRequest(body []byte) (*Request, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	o, r, err := parseCommon(p, body)
	if err != nil {
		return nil, err
	}
	r.Endpoint = Chat
	msgs := o.Get("messages")
	if absent(msgs) {
		return nil, invalidRequest("messages", "Missing required parameter: 'messages'.")
	}
	messages, err := msgs.Array()
	if err != nil {
		return nil, typeError("messages", "an array", msgs)
	}
	if len(messages) == 0 {
		return nil, invalidRequest("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
	}
	r.Messages = msgs.MarshalTo(nil)
	if err := readTask(o, r); err != nil {
		return nil, err
	}
	var system, input strings.Builder
	for i, m := range messages {
		mo, err := m.Object()
		if err != nil {
			return nil, typeError(fmt.Sprintf("messages[%d]", i), "an object", m)
		}
		if _, dup := duplicateKey(mo); dup {
			return nil, noDuplicateKey(mo, fmt.Sprintf("messages[%d]", i))
		}
		role := mo.Get("role")
		if absent(role) {
			return nil, invalidRequest(fmt.Sprintf("messages[%d].role", i), "Missing required parameter: 'messages[%d].role'.", i)
		}
		if role.Type() != fastjson.TypeString {
			return nil, typeError(fmt.Sprintf("messages[%d].role", i), "a string", role)
		}
		text, media, err := contentText(mo.Get("content"), "messages", i)
		if err != nil {
			return nil, err
		}
		if media != "" && r.Ineligible == "" {
			r.Ineligible = media
		}
		dst := &input
		if rb := role.GetStringBytes(); string(rb) == "system" || string(rb) == "developer" {
			dst = &system
		}
		if dst.Len() > 0 && len(text) > 0 {
			dst.WriteByte('\n')
		}
		dst.Write(text)
	}
	r.System, r.Input = validUTF8(system.String()), validUTF8(input.String())
	n, err := intParam(o.Get("n"), "n")
	if err != nil {
		return nil, err
	}
	logprobs, err := boolParam(o.Get("logprobs"), "logprobs")
	if err != nil {
		return nil, err
	}
	switch {
	case r.Ineligible != "":
	case hasValue(o.Get("tools")) || hasValue(o.Get("functions")):
		r.Ineligible = "tools"
	case n > 1:
		r.Ineligible = "n>1"
	case logprobs:
		r.Ineligible = "logprobs"
	}
	if r.Shape, r.Schema, err = answerShape(o.Get("response_format"), "response_format", "json_schema"); err != nil {
		return nil, err
	}
	if hasValue(o.Get("tools")) || hasValue(o.Get("functions")) {
		r.Shape += "+tools"
	}
	stripTask(o, r)
	return r, nil
}

// readTask reads metadata.task, which names the request's domain.
func readTask(o *fastjson.Object, r *Request) error {
	meta := o.Get("metadata")
	if absent(meta) {
		return nil
	}
	mo, err := meta.Object()
	if err != nil {
		return typeError("metadata", "an object", meta)
	}
	if err := noDuplicateKey(mo, "metadata"); err != nil {
		return err
	}
	if task := mo.Get("task"); !absent(task) {
		if task.Type() != fastjson.TypeString {
			return typeError("metadata.task", "a string", task)
		}
		r.Task = validUTF8(string(task.GetStringBytes()))
	}
	return nil
}

// stripTask sets r.Forward to the body without metadata.task when the
// request named its domain there: the task is the gateway's, not the
// teacher's. It runs last, once nothing more is read from o.
func stripTask(o *fastjson.Object, r *Request) {
	meta := o.Get("metadata")
	if meta == nil || meta.Get("task") == nil {
		return
	}
	mo, _ := meta.Object()
	mo.Del("task")
	if mo.Len() == 0 {
		o.Del("metadata")
	}
	// fastjson writes a key it decoded with Go's quoting, which is not
	// JSON for a key holding invalid UTF-8 and an escape: such a body goes
	// to the teacher as the client sent it, task and all.
	if b := o.MarshalTo(nil); fastjson.ValidateBytes(b) == nil {
		r.Forward = b
	}
}

// answerShape reads the shape of answer a request asks for from
// response_format (chat) or text.format (Responses API), named param:
// "" for text or when absent, "json_object", "json_schema:" and 12 hex
// digits of a hash of the schema, or "format:" and a hash of a type this
// gateway does not know. The schema is at schemaAt on chat
// (response_format.json_schema.schema) and in the format itself on the
// Responses API; both hash alike, so the two APIs share a domain. schema
// is the schema's compact JSON (Request.Schema).
func answerShape(v *fastjson.Value, param, schemaAt string) (shape string, schema []byte, err error) {
	if absent(v) {
		return "", nil, nil
	}
	fo, err := v.Object()
	if err != nil {
		return "", nil, typeError(param, "an object", v)
	}
	if err := noDuplicateKey(fo, param); err != nil {
		return "", nil, err
	}
	kind := fo.Get("type")
	if !absent(kind) && kind.Type() != fastjson.TypeString {
		return "", nil, typeError(param+".type", "a string", kind)
	}
	switch k := string(kind.GetStringBytes()); k {
	case "", "text":
		return "", nil, nil
	case "json_schema":
		holder := v
		if schemaAt != "" {
			holder = v.Get(schemaAt)
		}
		if holder != nil {
			if sv := holder.Get("schema"); sv != nil {
				schema = sv.MarshalTo(nil)
			}
		}
		h := sha256.Sum256(schema)
		return "json_schema:" + hex.EncodeToString(h[:6]), schema, nil
	case "json_object":
		return k, nil, nil
	default:
		// A kind this gateway does not know: a shape of its own.
		h := sha256.Sum256([]byte(k))
		return "format:" + hex.EncodeToString(h[:6]), nil, nil
	}
}

// ParseCompletionRequest reads a /v1/completions body, with
// ParseChatRequest's errors. Only a single string prompt is eligible for
// distillation.
func ParseCompletionRequest(body []byte) (*Request, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	o, r, err := parseCommon(p, body)
	if err != nil {
		return nil, err
	}
	r.Endpoint = Completions
	n, err := intParam(o.Get("n"), "n")
	if err != nil {
		return nil, err
	}
	bestOf, err := intParam(o.Get("best_of"), "best_of")
	if err != nil {
		return nil, err
	}
	echo, err := boolParam(o.Get("echo"), "echo")
	if err != nil {
		return nil, err
	}
	if prompt := o.Get("prompt"); prompt != nil && prompt.Type() == fastjson.TypeString {
		r.Input = validUTF8(string(prompt.GetStringBytes()))
	} else {
		r.Ineligible = "prompt_not_string"
	}
	switch {
	case r.Ineligible != "":
	case n > 1 || bestOf > 1:
		r.Ineligible = "n>1"
	case hasValue(o.Get("logprobs")):
		r.Ineligible = "logprobs"
	case echo:
		r.Ineligible = "echo"
	}
	return r, nil
}

// parseCommon reads what both endpoints' bodies share: a JSON object with
// a model and the stream settings.
func parseCommon(p *fastjson.Parser, body []byte) (*fastjson.Object, *Request, error) {
	o, err := parseObject(p, body)
	if err != nil {
		return nil, nil, err
	}
	model, err := requireModel(o)
	if err != nil {
		return nil, nil, err
	}
	r := &Request{Model: model}
	if err := readStreamFields(o, r); err != nil {
		return nil, nil, err
	}
	return o, r, nil
}

// parseObject parses a request body that must be a JSON object (or null,
// read as an empty one), with no key twice. fastjson's parser is lenient
// (it reads "+" as a number); its validator, and scanJSON's check for raw
// control characters in strings, make it strict JSON. Both recurse once per
// level of nesting, the validator without a bound, so scanJSON refuses
// nesting deeper than MaxNesting before either runs.
func parseObject(p *fastjson.Parser, body []byte) (*fastjson.Object, error) {
	var v *fastjson.Value
	var err error
	switch scanJSON(body) {
	case scanTooDeep:
		return nil, invalidRequest("", "The JSON body of your request nests objects and arrays more than %d levels deep; the gateway reads at most %d levels.", MaxNesting, MaxNesting)
	case scanOK:
		if err = fastjson.ValidateBytes(body); err == nil {
			v, err = p.ParseBytes(body)
		}
	}
	if v == nil || err != nil {
		return nil, invalidRequest("", "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)")
	}
	if v.Type() == fastjson.TypeNull {
		return &fastjson.Object{}, nil
	}
	o, err := v.Object()
	if err != nil {
		return nil, invalidRequest("", "The request body must be a JSON object.")
	}
	if err := noDuplicateKey(o, ""); err != nil {
		return nil, err
	}
	return o, nil
}

// MaxNesting is the deepest nesting of objects and arrays a request body
// may have: 128 levels, the outermost object being the first. OpenAI
// requests nest far less (a message's content part is the fifth level;
// a strict JSON schema in response_format or a tool's parameters may nest
// 10 schema levels, about 25 JSON levels), and a bound keeps the recursive
// JSON validator and parser, and any code that walks the tree, within a
// small stack: a body nested millions of levels deep would otherwise end
// the process with a stack overflow.
const MaxNesting = 128

type scanResult uint8

const (
	scanOK      scanResult = iota
	scanInvalid            // not JSON: a raw control character in a string, or a bracket closed that was never opened
	scanTooDeep            // objects and arrays nest deeper than MaxNesting
)

// scanJSON makes one pass over a body, without recursion, before any
// recursive parser sees it. It finds two things the fastjson validator
// does not refuse: raw control characters in strings, which JSON forbids,
// and nesting deeper than MaxNesting. Its reading of where strings begin
// and end is the validator's, up to the validator's first error, so no
// body the scan lets through makes the validator recurse deeper than
// MaxNesting (and one more level for a scalar).
func scanJSON(b []byte) scanResult {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// A string: find its end, skipping escaped characters.
			for i++; i < len(b); i++ {
				c := b[i]
				if !stringStop[c] {
					continue
				}
				if c == '"' {
					break
				}
				if c != '\\' {
					return scanInvalid // a raw control character
				}
				i++
			}
		case '[', '{':
			if depth++; depth > MaxNesting {
				return scanTooDeep
			}
		case ']', '}':
			if depth--; depth < 0 {
				return scanInvalid
			}
		}
	}
	return scanOK
}

// stringStop marks the bytes scanJSON stops at inside a string: its end,
// an escape and the control characters JSON forbids there.
var stringStop = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// noDuplicateKey returns the error for an object that holds a key twice;
// where names the object ("" for the body itself, "messages[2]"). A
// teacher reading JSON the way Python does takes the last copy of a key,
// the gateway's parser the first: with two "messages" the gateway would
// store one text beside the teacher's answer to another.
func noDuplicateKey(o *fastjson.Object, where string) error {
	key, dup := duplicateKey(o)
	if !dup {
		return nil
	}
	if len(key) > 64 {
		key = strings.ToValidUTF8(key[:64], "") + "…"
	}
	if where == "" {
		return invalidRequest(key, "Duplicate key '%s' in the request body.", key)
	}
	return invalidRequest(where+"."+key, "Duplicate key '%s' in %s.", key, where)
}

// duplicateKey returns a key o holds more than once, if any. Keys are
// compared as decoded ("m\u0065ssages" is "messages"), as every JSON reader
// compares them. It is on every request's path, for every object the
// gateway reads, so a first pass only sets one bit of a 64-bit mask per
// key, picked by its length and first and last bytes; the keys of a
// request's objects rarely share one, and only when two do are they
// compared.
func duplicateKey(o *fastjson.Object) (key string, dup bool) {
	if o.Len() < 2 {
		return "", false
	}
	var mask uint64
	shared := false
	o.Visit(func(k []byte, _ *fastjson.Value) {
		bit := keyBit(k)
		shared = shared || mask&bit != 0
		mask |= bit
	})
	if !shared {
		return "", false
	}
	return compareKeys(o)
}

// keyBit is a key's bit in duplicateKey's mask.
func keyBit(k []byte) uint64 {
	if len(k) == 0 {
		return 1
	}
	h := uint64(len(k)) | uint64(k[0])<<16 | uint64(k[len(k)-1])<<24
	return 1 << (h * 0x9E3779B97F4A7C15 >> 58)
}

// smallObject is the largest object compareKeys checks without a map.
const smallObject = 16

// compareKeys is duplicateKey's exact check: each key against the ones
// before it, or, in an object with more than smallObject keys, a map.
func compareKeys(o *fastjson.Object) (key string, dup bool) {
	n := o.Len()
	if n <= smallObject {
		var seen [smallObject][]byte
		i := 0
		o.Visit(func(k []byte, _ *fastjson.Value) {
			if dup {
				return
			}
			for _, s := range seen[:i] {
				if string(s) == string(k) {
					key, dup = validUTF8(string(k)), true
					return
				}
			}
			seen[i] = k
			i++
		})
		return key, dup
	}
	seen := make(map[string]struct{}, n)
	o.Visit(func(k []byte, _ *fastjson.Value) {
		if dup {
			return
		}
		if _, ok := seen[string(k)]; ok {
			key, dup = validUTF8(string(k)), true
			return
		}
		seen[string(k)] = struct{}{}
	})
	return key, dup
}

// requireModel returns the body's model, which must be a non-empty string.
func requireModel(o *fastjson.Object) (string, error) {
	v := o.Get("model")
	if !absent(v) && v.Type() != fastjson.TypeString {
		return "", typeError("model", "a string", v)
	}
	model := v.GetStringBytes()
	if len(model) == 0 {
		return "", invalidRequest("model", "you must provide a model parameter")
	}
	return validUTF8(string(model)), nil
}

// validUTF8 replaces invalid UTF-8 in a string read from JSON, as
// encoding/json does, so that what the gateway stores and featurizes is
// text.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// readStreamFields reads stream and stream_options.include_usage.
func readStreamFields(o *fastjson.Object, r *Request) error {
	var err error
	if r.Stream, err = boolParam(o.Get("stream"), "stream"); err != nil {
		return err
	}
	so := o.Get("stream_options")
	if absent(so) {
		return nil
	}
	opts, err := so.Object()
	if err != nil {
		return typeError("stream_options", "an object", so)
	}
	if err := noDuplicateKey(opts, "stream_options"); err != nil {
		return err
	}
	r.IncludeUsage, err = boolParam(opts.Get("include_usage"), "stream_options.include_usage")
	return err
}

// absent reports whether a field is missing or null; OpenAI's API treats
// the two alike.
func absent(v *fastjson.Value) bool { return v == nil || v.Type() == fastjson.TypeNull }

// boolParam reads an optional boolean parameter; absent is false.
func boolParam(v *fastjson.Value, param string) (bool, error) {
	if absent(v) {
		return false, nil
	}
	b, err := v.Bool()
	if err != nil {
		return false, typeError(param, "a boolean", v)
	}
	return b, nil
}

// intParam reads an optional integer parameter; absent is 0.
func intParam(v *fastjson.Value, param string) (int, error) {
	if absent(v) {
		return 0, nil
	}
	n, err := v.Int()
	if err != nil {
		return 0, typeError(param, "an integer", v)
	}
	return n, nil
}

// typeError is the error for a parameter of the wrong JSON type.
func typeError(param, want string, got *fastjson.Value) error {
	return invalidRequest(param, "Invalid type for '%s': expected %s, but got %s instead.", param, want, jsonTypeName(got))
}

// jsonTypeName names a value's JSON type the way a JSON user thinks of it.
func jsonTypeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	default:
		return "null"
	}
}

// contentText returns the text of <list>[idx].content (a string, an array
// of parts, or null) and, if it holds a part no student can take, that
// part's kind. list is "messages" or "input", for the error's param. The
// text is valid until the parser's next use.
func contentText(v *fastjson.Value, list string, idx int) (text []byte, media string, err error) {
	if absent(v) {
		return nil, "", nil
	}
	invalid := func(why string) error {
		return invalidRequest(fmt.Sprintf("%s[%d].content", list, idx), "Invalid '%s[%d].content': %s", list, idx, why)
	}
	switch v.Type() {
	case fastjson.TypeString:
		return v.GetStringBytes(), "", nil
	case fastjson.TypeArray:
		parts, _ := v.Array()
		for j, p := range parts {
			po, err := p.Object()
			if err != nil {
				return nil, "", invalid("expected an array of content parts")
			}
			if _, dup := duplicateKey(po); dup {
				return nil, "", noDuplicateKey(po, fmt.Sprintf("%s[%d].content[%d]", list, idx, j))
			}
			kind, txt := po.Get("type"), po.Get("text")
			if !absent(kind) && kind.Type() != fastjson.TypeString || !absent(txt) && txt.Type() != fastjson.TypeString {
				return nil, "", invalid("expected an array of content parts")
			}
			switch string(kind.GetStringBytes()) {
			case "text", "input_text", "output_text":
				if len(text) > 0 {
					text = append(text, '\n')
				}
				text = append(text, txt.GetStringBytes()...)
			case "refusal":
				// An earlier assistant turn's refusal: no text to learn.
			case "image_url", "input_image":
				media = "image_input"
			case "input_audio":
				media = "audio_input"
			default:
				media = "file_input"
			}
		}
		return text, media, nil
	default:
		return nil, "", invalid("expected a string or an array of content parts")
	}
}

// hasValue reports whether v is there and neither null nor an empty array.
func hasValue(v *fastjson.Value) bool {
	if absent(v) {
		return false
	}
	a, err := v.Array()
	return err != nil || len(a) > 0
}
