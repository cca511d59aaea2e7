package teachersim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// This file serves OpenAI's Responses API: POST /v1/responses, and
// GET and DELETE /v1/responses/{id} for the responses it stores.
//
// A Responses request is answered exactly as a chat request would be whose
// messages are the request's conversation (see [conversation]):
//
//   - the system prompt is "instructions" when it is a non-empty string;
//     otherwise the first system or developer message of the conversation,
//     which begins with the input items of the previous_response_id chain
//     (OpenAI carries those over, but not their instructions) and goes on
//     with this request's input items;
//   - the text the answer is looked up by is the text of this request's
//     other input items (user and assistant messages), joined by "\n" as
//     chat joins its non-system messages; a string input is one user
//     message. Earlier turns named by previous_response_id are context and
//     count as input tokens, but are not part of the text.

// maxStoredResponses bounds the responses a Server keeps for GET, DELETE
// and previous_response_id; the oldest goes first.
const maxStoredResponses = 10_000

// responsesRequest is a POST /v1/responses body: the fields teacher-sim
// reads or echoes. Other fields (tools, reasoning, ...) are accepted and
// ignored.
type responsesRequest struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	Stream             bool            `json:"stream"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Metadata           json.RawMessage `json:"metadata"`
	Text               struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	MaxOutputTokens *int64   `json:"max_output_tokens"`
	Temperature     *float64 `json:"temperature"`
	TopP            *float64 `json:"top_p"`
}

// inputItem is one element of an array input. teacher-sim knows messages
// only: {"type": "message" (optional), "role": ..., "content": ...}.
type inputItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// Content part types a Responses message may hold: user, system and
// developer messages hold input parts, assistant messages output parts. The
// first of each list carries the text.
var (
	inputPartTypes  = []string{"input_text", "input_image", "input_file"}
	outputPartTypes = []string{"output_text", "refusal"}
)

// createResponse serves POST /v1/responses.
func (s *Server) createResponse(ctx *fasthttp.RequestCtx, n uint64) {
	var req responsesRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeError(ctx, decodeError(err, ""))
		return
	}
	if req.Model == "" {
		s.writeError(ctx, missingParam("model"))
		return
	}
	r := &responseReply{
		id:          "resp_sim-" + strconv.FormatUint(n, 10),
		msgID:       "msg_sim-" + strconv.FormatUint(n, 10),
		createdAt:   time.Now().Unix(),
		model:       req.Model,
		store:       req.Store == nil || *req.Store,
		temperature: 1,
		topP:        1,
	}
	if req.Instructions != nil {
		r.instructions, r.hasInstructions = *req.Instructions, true
	}
	if req.MaxOutputTokens != nil {
		r.maxOutputTokens, r.hasMaxOutputTokens = *req.MaxOutputTokens, true
	}
	if req.Temperature != nil {
		r.temperature = *req.Temperature
	}
	if req.TopP != nil {
		r.topP = *req.TopP
	}
	var e *apiError
	if r.format, e = readFormat(req.Text.Format); e != nil {
		s.writeError(ctx, e)
		return
	}
	if r.metadata, e = readMetadata(req.Metadata); e != nil {
		s.writeError(ctx, e)
		return
	}

	sc := s.getScratch()
	defer s.putScratch(sc)
	c := &sc.conv
	c.reset()
	var prev storedResponse
	if req.PreviousResponseID != nil && *req.PreviousResponseID != "" {
		r.previousID = *req.PreviousResponseID
		var ok bool
		if prev, ok = s.stored.get(r.previousID); !ok {
			s.writeError(ctx, &apiError{status: fasthttp.StatusBadRequest, message: fmt.Sprintf("Previous response with id '%s' not found.", r.previousID),
				typ: "invalid_request_error", param: "previous_response_id", code: "previous_response_not_found"})
			return
		}
		if prev.haveSystem {
			c.setSystem(prev.system)
		}
	}
	if e := readInput(c, req.Input); e != nil {
		s.writeError(ctx, e)
		return
	}
	// What a later response chained to this one inherits: the system
	// prompt of the input items, never the instructions.
	stored := storedResponse{system: string(c.system), haveSystem: c.haveSystem}
	if r.instructions != "" {
		c.haveSystem = false
		c.setSystem(r.instructions)
	}

	set := s.settings.Load()
	if !s.prelude(ctx, set) {
		return
	}
	r.text = s.answer(set, c)
	r.inputTokens = estimateTokens(c.runes()) + prev.tokens
	r.outputTokens = estimateTokens(utf8.RuneCountInString(r.text))
	stored.tokens = r.inputTokens + r.outputTokens
	save := func() {
		if r.store {
			stored.body = r.appendResponse(nil, true)
			s.stored.put(r.id, stored)
		}
	}
	if req.Stream {
		s.streamResponse(ctx, r, set.ChunkDelay, save)
		return
	}
	r.completedAt = time.Now().Unix()
	save()
	sc.out = r.appendResponse(sc.out[:0], true)
	s.writeJSON(ctx, sc.out)
}

// streamResponse answers r as the server-sent events of a Responses
// stream, each flushed as it is written, the text deltas after the first
// delay apart. save runs once the text is complete, before
// response.completed is sent.
func (s *Server) streamResponse(ctx *fasthttp.RequestCtx, r *responseReply, delay time.Duration, save func()) {
	s.eventStream(ctx, "responses", func(w *bufio.Writer, sc *scratch, done <-chan struct{}) {
		emit := func(kind eventKind, piece string) bool {
			sc.out = r.appendEvent(sc.out[:0], kind, piece)
			return flushed(w, sc.out)
		}
		for _, kind := range []eventKind{eventCreated, eventInProgress, eventItemAdded, eventPartAdded} {
			if !emit(kind, "") {
				return
			}
		}
		if !s.sendPieces(done, r.text, delay, true, func(piece string) bool { return emit(eventTextDelta, piece) }) {
			return
		}
		r.completedAt = time.Now().Unix()
		save()
		for _, kind := range []eventKind{eventTextDone, eventPartDone, eventItemDone, eventCompleted} {
			if !emit(kind, "") {
				return
			}
		}
	})
}

// responseByID serves GET and DELETE /v1/responses/{id}.
func (s *Server) responseByID(ctx *fasthttp.RequestCtx, id string) {
	if id == "" || strings.Contains(id, "/") {
		s.notFound(ctx) // GET /v1/responses/{id}/input_items and the like
		return
	}
	method := string(ctx.Method())
	if method != fasthttp.MethodGet && method != fasthttp.MethodDelete {
		s.allow(ctx, fasthttp.MethodGet+", "+fasthttp.MethodDelete)
		return
	}
	if !s.prelude(ctx, s.settings.Load()) {
		return
	}
	notFound := &apiError{status: fasthttp.StatusNotFound, message: fmt.Sprintf("Response with id '%s' not found.", id), typ: "invalid_request_error"}
	if method == fasthttp.MethodGet {
		r, ok := s.stored.get(id)
		if !ok {
			s.writeError(ctx, notFound)
			return
		}
		s.writeJSON(ctx, r.body)
		return
	}
	if !s.stored.delete(id) {
		s.writeError(ctx, notFound)
		return
	}
	body := appendString([]byte(`{"id":`), id)
	s.writeJSON(ctx, append(body, `,"object":"response","deleted":true}`...))
}

// readInput adds the messages of a Responses input to c: a string is one
// user message, an array holds message items. It returns the error that
// answers an input of any other shape.
func readInput(c *conversation, raw json.RawMessage) *apiError {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return missingParam("input")
	}
	switch raw[0] {
	case '"':
		if !c.add("user", raw, "input_text") {
			return errBadJSON
		}
		return nil
	case '[':
	default:
		return invalidType("input", "Invalid type for 'input': expected a string or an array of input items.")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return errBadJSON
	}
	if len(items) == 0 {
		return missingParam("input")
	}
	for i, rawItem := range items {
		param := "input[" + strconv.Itoa(i) + "]"
		var it inputItem
		if err := json.Unmarshal(rawItem, &it); err != nil {
			return decodeError(err, param)
		}
		if bytes.TrimSpace(rawItem)[0] != '{' {
			return invalidType(param, "Invalid type for '"+param+"': expected an input item object.")
		}
		if it.Type != "" && it.Type != "message" {
			return invalidParam(param+".type", fmt.Sprintf("Invalid value: '%s'. teacher-sim supports input items of type 'message' only.", it.Type))
		}
		parts := inputPartTypes
		switch it.Role {
		case "user", "system", "developer":
		case "assistant":
			parts = outputPartTypes
		case "":
			return missingParam(param + ".role")
		default:
			return invalidParam(param+".role", fmt.Sprintf("Invalid value: '%s'. Supported values are: 'user', 'assistant', 'system', and 'developer'.", it.Role))
		}
		content := bytes.TrimSpace(it.Content)
		if len(content) == 0 || string(content) == "null" {
			return missingParam(param + ".content")
		}
		if e := checkParts(param+".content", content, parts); e != nil {
			return e
		}
		if !c.add(it.Role, content, parts[0]) {
			return invalidType(param+".content", "Invalid type for '"+param+".content': expected a string or an array of content parts.")
		}
	}
	return nil
}

// checkParts checks that every part of an array content, the value of
// param, is an object whose type is one of types.
func checkParts(param string, content []byte, types []string) *apiError {
	if content[0] != '[' {
		return nil
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(content, &parts); err != nil {
		return nil // not an array of parts: add reports it
	}
	for j, raw := range parts {
		p := param + "[" + strconv.Itoa(j) + "]"
		var part contentPart
		if err := json.Unmarshal(raw, &part); err != nil || bytes.TrimSpace(raw)[0] != '{' {
			return invalidType(p, "Invalid type for '"+p+"': expected a content part object.")
		}
		switch {
		case part.Type == "":
			return missingParam(p + ".type")
		case !contains(types, part.Type):
			return invalidParam(p+".type", fmt.Sprintf("Invalid value: '%s'. Supported values are: %s.", part.Type, quoteList(types)))
		}
	}
	return nil
}

// textFormatTypes are the values of text.format.type.
var textFormatTypes = []string{"text", "json_object", "json_schema"}

// readFormat checks text.format and returns it as compact JSON, by
// default {"type":"text"}. The answer does not depend on it.
func readFormat(raw json.RawMessage) ([]byte, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return []byte(`{"type":"text"}`), nil
	}
	var f struct {
		Type   string          `json:"type"`
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, decodeError(err, "text.format")
	}
	if raw[0] != '{' {
		return nil, invalidType("text.format", "Invalid type for 'text.format': expected an object.")
	}
	switch {
	case f.Type == "":
		return nil, missingParam("text.format.type")
	case !contains(textFormatTypes, f.Type):
		return nil, invalidParam("text.format.type", fmt.Sprintf("Invalid value: '%s'. Supported values are: %s.", f.Type, quoteList(textFormatTypes)))
	case f.Type == "json_schema" && f.Name == "":
		return nil, missingParam("text.format.name")
	case f.Type == "json_schema" && (len(f.Schema) == 0 || f.Schema[0] != '{'):
		return nil, missingParam("text.format.schema")
	}
	return compact(raw), nil
}

// readResponseFormat checks a chat request's response_format, as OpenAI
// does: absent, or an object of a known type, json_schema with a
// json_schema object naming it and holding its schema object. The answer
// does not depend on it.
func readResponseFormat(raw json.RawMessage) *apiError {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var f struct {
		Type       string          `json:"type"`
		JSONSchema json.RawMessage `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return decodeError(err, "response_format")
	}
	if raw[0] != '{' {
		return invalidType("response_format", "Invalid type for 'response_format': expected an object.")
	}
	switch {
	case f.Type == "":
		return missingParam("response_format.type")
	case !contains(textFormatTypes, f.Type):
		return invalidParam("response_format.type", fmt.Sprintf("Invalid value for 'response_format.type': '%s'. Supported values are: %s.", f.Type, quoteList(textFormatTypes)))
	case f.Type != "json_schema":
		return nil
	}
	var s struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	}
	if err := json.Unmarshal(f.JSONSchema, &s); err != nil || len(f.JSONSchema) == 0 || f.JSONSchema[0] != '{' {
		return missingParam("response_format.json_schema")
	}
	switch {
	case s.Name == "":
		return missingParam("response_format.json_schema.name")
	case len(s.Schema) > 0 && s.Schema[0] != '{':
		return invalidType("response_format.json_schema.schema", "Invalid type for 'response_format.json_schema.schema': expected an object.")
	}
	return nil
}

// readMetadata checks metadata, an object of string values, and returns
// it as compact JSON, by default {}.
func readMetadata(raw json.RawMessage) ([]byte, *apiError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return []byte(`{}`), nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil || raw[0] != '{' {
		return nil, invalidType("metadata", "Invalid type for 'metadata': expected an object with string values.")
	}
	return compact(raw), nil
}

// compact returns valid JSON without insignificant space, fit for one line
// of a server-sent event.
func compact(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		panic(err) // raw was decoded already
	}
	return b.Bytes()
}

func invalidType(param, message string) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, message: message, typ: "invalid_request_error", param: param, code: "invalid_type"}
}

// decodeError answers a body or value that encoding/json could not decode
// into its Go type, the value of param ("" for the body): a value of the
// wrong JSON type is named, as OpenAI does; anything else is bad JSON.
func decodeError(err error, param string) *apiError {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return errBadJSON
	}
	field := param
	if te.Field != "" {
		if field != "" {
			field += "."
		}
		field += te.Field
	}
	if field == "" {
		return errBadJSON
	}
	got, _, _ := strings.Cut(te.Value, " ") // "number 1.5"
	return invalidType(field, fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", field, kindOf(te.Type), article(got)))
}

// kindOf names the JSON type a Go type decodes from.
func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// article names a JSON type as encoding/json reports it ("string",
// "bool", "array", ...) with its article.
func article(kind string) string {
	switch kind {
	case "bool":
		return "a boolean"
	case "array", "object":
		return "an " + kind
	default:
		return "a " + kind
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// quoteList writes 'a', 'b', and 'c', as OpenAI's messages list values.
func quoteList(list []string) string {
	var b strings.Builder
	for i, v := range list {
		switch {
		case i > 0 && i == len(list)-1:
			b.WriteString(", and ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString("'" + v + "'")
	}
	return b.String()
}

// storedResponse is a response kept for GET, DELETE and
// previous_response_id.
type storedResponse struct {
	body []byte // the completed Response object
	// system is the system prompt of its conversation's input items,
	// inherited along previous_response_id; haveSystem is false without
	// one. Instructions are not inherited.
	system     string
	haveSystem bool
	// tokens is what the response adds to the input of one chained to
	// it: its input and output tokens.
	tokens int
}

// responseStore keeps the newest stored responses, at most max.
type responseStore struct {
	mu   sync.Mutex
	max  int
	byID map[string]storedResponse
	ring []string // ids in the order stored; next is the oldest slot
	next int
}

func newResponseStore(max int) *responseStore {
	return &responseStore{max: max, byID: make(map[string]storedResponse)}
}

// put stores r under id, forgetting the oldest response once it holds
// max. Ids are never reused.
func (st *responseStore) put(id string, r storedResponse) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.ring) < st.max {
		st.ring = append(st.ring, id)
	} else {
		delete(st.byID, st.ring[st.next]) // a no-op when deleted already
		st.ring[st.next] = id
		st.next = (st.next + 1) % st.max
	}
	st.byID[id] = r
}

func (st *responseStore) get(id string) (storedResponse, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r, ok := st.byID[id]
	return r, ok
}

// delete forgets id and reports whether it was stored.
func (st *responseStore) delete(id string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.byID[id]
	delete(st.byID, id)
	return ok
}
