package teachersim

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// scratch is the per-request working memory of the handler, pooled.
type scratch struct {
	chat chatRequest
	conv conversation // what a chat request is answered by
	text []byte       // prompt of a completion
	out  []byte       // response body
	vec  []float32
	raw  []byte // embedding bytes before base64
}

// maxPooledBytes keeps unusually large buffers out of the pool.
const maxPooledBytes = 1 << 20

func (s *Server) getScratch() *scratch { return s.scratch.Get().(*scratch) }

func (s *Server) putScratch(sc *scratch) {
	if cap(sc.out) > maxPooledBytes || cap(sc.text) > maxPooledBytes || cap(sc.raw) > maxPooledBytes ||
		cap(sc.conv.system) > maxPooledBytes || cap(sc.conv.text) > maxPooledBytes {
		return
	}
	s.scratch.Put(sc)
}

// apiError is an error answer: an HTTP status and the OpenAI error object.
type apiError struct {
	status  int
	message string
	typ     string
	param   string // "" is written as null
	code    string // "" is written as null
}

var (
	errInvalidKey = &apiError{status: fasthttp.StatusUnauthorized, message: "Incorrect API key provided", typ: "invalid_request_error", code: "invalid_api_key"}
	errInjected   = &apiError{message: "teacher-sim injected error", typ: "server_error", code: "injected_error"}
	errBadJSON    = &apiError{status: fasthttp.StatusBadRequest, message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)", typ: "invalid_request_error"}
)

func missingParam(param string) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, message: "Missing required parameter: '" + param + "'.", typ: "invalid_request_error", param: param, code: "missing_required_parameter"}
}

func invalidParam(param, message string) *apiError {
	return &apiError{status: fasthttp.StatusBadRequest, message: message, typ: "invalid_request_error", param: param, code: "invalid_value"}
}

// writeError is the one place errors become an HTTP status and an OpenAI
// error object.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	sc := s.getScratch()
	defer s.putScratch(sc)
	b := append(sc.out[:0], `{"error":{"message":`...)
	b = appendString(b, e.message)
	b = append(b, `,"type":`...)
	b = appendString(b, e.typ)
	b = append(b, `,"param":`...)
	b = appendNullable(b, e.param)
	b = append(b, `,"code":`...)
	b = appendNullable(b, e.code)
	b = append(b, "}}"...)
	sc.out = b
	ctx.Response.ResetBody()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// readError answers a request fasthttp could not read (malformed HTTP, a
// body over the size limit) with an OpenAI error.
func (s *Server) readError(ctx *fasthttp.RequestCtx, err error) {
	status := fasthttp.StatusBadRequest
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		status = fasthttp.StatusRequestEntityTooLarge
	}
	s.setRequestID(ctx)
	s.writeError(ctx, &apiError{status: status, message: "teacher-sim could not read the request: " + err.Error(), typ: "invalid_request_error"})
}

func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendString(dst, s)
}

func (s *Server) writeJSON(ctx *fasthttp.RequestCtx, body []byte) {
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

const (
	pathChat        = "/v1/chat/completions"
	pathCompletions = "/v1/completions"
	pathEmbeddings  = "/v1/embeddings"
	pathModels      = "/v1/models"
	pathResponses   = "/v1/responses"
	pathSimConfig   = "/sim/config"
	pathSimStats    = "/sim/stats"
)

// handle is the request handler: request id, panic recovery, counting, then
// the control surface or the API.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	n := s.setRequestID(ctx)
	api := !bytes.HasPrefix(ctx.Path(), []byte("/sim/"))
	if api {
		s.requests.Add(1)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("teachersim: handler panic", "path", string(ctx.Path()), "panic", r)
			s.writeError(ctx, &apiError{status: fasthttp.StatusInternalServerError, message: "teacher-sim internal error", typ: "server_error"})
		}
		if api && ctx.Response.StatusCode() >= 400 {
			s.errors.Add(1)
		}
	}()
	if s.shuttingDown() {
		ctx.SetConnectionClose()
	}
	if api {
		s.api(ctx, n)
	} else {
		s.control(ctx)
	}
}

// setRequestID numbers a response with the header "x-request-id: sim-<n>"
// and returns n.
func (s *Server) setRequestID(ctx *fasthttp.RequestCtx) uint64 {
	n := s.seq.Add(1)
	var id [24]byte
	ctx.Response.Header.SetBytesV("x-request-id", strconv.AppendUint(append(id[:0], "sim-"...), n, 10))
	return n
}

// api serves the OpenAI-compatible paths; n is the request's number.
func (s *Server) api(ctx *fasthttp.RequestCtx, n uint64) {
	if s.authz != nil && subtle.ConstantTimeCompare(ctx.Request.Header.Peek("Authorization"), s.authz) != 1 {
		s.writeError(ctx, errInvalidKey)
		return
	}
	path := ctx.Path()
	switch string(path) {
	case pathChat:
		if s.allow(ctx, fasthttp.MethodPost) {
			s.chat(ctx, n)
		}
	case pathCompletions:
		if s.allow(ctx, fasthttp.MethodPost) {
			s.completion(ctx, n)
		}
	case pathEmbeddings:
		if s.allow(ctx, fasthttp.MethodPost) {
			s.embeddings(ctx)
		}
	case pathModels:
		if s.allow(ctx, fasthttp.MethodGet) && s.prelude(ctx, s.settings.Load()) {
			s.writeJSON(ctx, s.modelList)
		}
	case pathResponses:
		if s.allow(ctx, fasthttp.MethodPost) {
			s.createResponse(ctx, n)
		}
	default:
		if id, ok := bytes.CutPrefix(path, []byte(pathResponses+"/")); ok {
			s.responseByID(ctx, string(id))
			return
		}
		id, ok := bytes.CutPrefix(path, []byte(pathModels+"/"))
		if !ok || len(id) == 0 {
			s.notFound(ctx)
			return
		}
		if !s.allow(ctx, fasthttp.MethodGet) || !s.prelude(ctx, s.settings.Load()) {
			return
		}
		body, ok := s.models[string(id)]
		if !ok {
			s.writeError(ctx, &apiError{status: fasthttp.StatusNotFound, message: fmt.Sprintf("The model '%s' does not exist", id), typ: "invalid_request_error", param: "model", code: "model_not_found"})
			return
		}
		s.writeJSON(ctx, body)
	}
}

func (s *Server) notFound(ctx *fasthttp.RequestCtx) {
	s.writeError(ctx, &apiError{status: fasthttp.StatusNotFound, message: fmt.Sprintf("Invalid URL (%s %s)", ctx.Method(), ctx.Path()), typ: "invalid_request_error", code: "unknown_url"})
}

// allow answers 405 unless the request has the given method.
func (s *Server) allow(ctx *fasthttp.RequestCtx, method string) bool {
	if string(ctx.Method()) == method {
		return true
	}
	ctx.Response.Header.Set("Allow", method)
	s.writeError(ctx, &apiError{status: fasthttp.StatusMethodNotAllowed, message: fmt.Sprintf("Method %s not allowed for %s, use %s", ctx.Method(), ctx.Path(), method), typ: "invalid_request_error", code: "method_not_allowed"})
	return false
}

// prelude waits out the request's latency and rolls for an injected error,
// which it writes. It reports whether the request should be answered.
func (s *Server) prelude(ctx *fasthttp.RequestCtx, set *settings) bool {
	if set.Latency == 0 && set.Jitter == 0 && set.ErrorRate == 0 {
		return true
	}
	var r *rand.Rand
	if set.Jitter > 0 || (set.ErrorRate > 0 && set.ErrorRate < 1) {
		r = s.rngs.Get().(*rand.Rand)
		defer s.rngs.Put(r)
	}
	d := set.Latency
	if set.Jitter > 0 {
		d += time.Duration(r.Int64N(int64(2*set.Jitter)+1)) - set.Jitter
	}
	s.sleep(ctx.Done(), d)
	if set.ErrorRate >= 1 || (set.ErrorRate > 0 && r.Float64() < set.ErrorRate) {
		e := *errInjected
		e.status = set.ErrorStatus
		s.writeError(ctx, &e)
		return false
	}
	return true
}

// sleep waits d, or less if the server shuts down; done is the fasthttp
// server's shutdown channel, nil outside a fasthttp.Server.Serve. It reports
// whether it waited all of d.
func (s *Server) sleep(done <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
	case <-done:
	}
	return false
}

// chat serves POST /v1/chat/completions.
func (s *Server) chat(ctx *fasthttp.RequestCtx, n uint64) {
	sc := s.getScratch()
	defer s.putScratch(sc)
	req := &sc.chat
	req.reset()
	if err := json.Unmarshal(ctx.PostBody(), req); err != nil {
		s.writeError(ctx, errBadJSON)
		return
	}
	if req.Model == "" {
		s.writeError(ctx, missingParam("model"))
		return
	}
	if len(req.Messages) == 0 {
		s.writeError(ctx, missingParam("messages"))
		return
	}
	if e := readResponseFormat(req.ResponseFormat); e != nil {
		s.writeError(ctx, e)
		return
	}
	sc.conv.reset()
	for i, m := range req.Messages {
		if !sc.conv.add(m.Role, m.Content, "text") {
			s.writeError(ctx, invalidParam("messages["+strconv.Itoa(i)+"].content", "Invalid type for 'messages["+strconv.Itoa(i)+"].content': expected a string or an array of content parts."))
			return
		}
	}
	set := s.settings.Load()
	if !s.prelude(ctx, set) {
		return
	}
	text := s.answer(set, &sc.conv)
	r := newReply(true, n, req.Model, text, sc.conv.runes())
	if req.Stream {
		r.includeUsage = req.StreamOptions.IncludeUsage
		s.stream(ctx, r, text, set.ChunkDelay)
		return
	}
	sc.out = r.appendJSON(sc.out[:0], text)
	s.writeJSON(ctx, sc.out)
}

// completion serves POST /v1/completions.
func (s *Server) completion(ctx *fasthttp.RequestCtx, n uint64) {
	var req completionRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeError(ctx, errBadJSON)
		return
	}
	if req.Model == "" {
		s.writeError(ctx, missingParam("model"))
		return
	}
	if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
		s.writeError(ctx, missingParam("prompt"))
		return
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	var ok bool
	if sc.text, ok = firstPrompt(sc.text[:0], req.Prompt); !ok {
		s.writeError(ctx, invalidParam("prompt", "Invalid type for 'prompt': expected a string or an array of strings."))
		return
	}
	set := s.settings.Load()
	if !s.prelude(ctx, set) {
		return
	}
	a, found := s.ix.completion(sc.text)
	text := s.vary(set, set.answer(a, found), found)
	r := newReply(false, n, req.Model, text, utf8.RuneCount(sc.text))
	if req.Stream {
		r.includeUsage = req.StreamOptions.IncludeUsage
		s.stream(ctx, r, text, set.ChunkDelay)
		return
	}
	sc.out = r.appendJSON(sc.out[:0], text)
	s.writeJSON(ctx, sc.out)
}

// answer is the teacher's answer to a conversation under set: the
// label of the example whose text is the conversation's text, searched
// among the tasks whose system prompt is the conversation's, or among all
// tasks when none has it.
func (s *Server) answer(set *settings, c *conversation) string {
	a, found := s.ix.chat(c.system, c.text)
	return s.vary(set, set.answer(a, found), found)
}

// vary returns a known text's answer, when it is a record, written in
// another layout in a share set.RecordVariation of answers (see
// record.go); else text.
func (s *Server) vary(set *settings, text string, found bool) string {
	if !found || set.RecordVariation == 0 || !strings.HasPrefix(text, "{") {
		return text
	}
	r := s.rngs.Get().(*rand.Rand)
	defer s.rngs.Put(r)
	if set.RecordVariation < 1 && r.Float64() >= set.RecordVariation {
		return text
	}
	return restyle(text, r)
}

// answer is the teacher's answer under these settings.
func (set *settings) answer(a answer, found bool) string {
	switch {
	case !found:
		return set.UnknownAnswer
	case set.SwapLabels:
		return a.swapped
	default:
		return a.label
	}
}

// fingerprint is teacher-sim's system_fingerprint.
const fingerprint = "fp_teachersim"

// newReply returns the chat or text completion answering text: its id
// ends in n, created now, token counts estimated from the prompt's runes
// and the answer.
func newReply(chat bool, n uint64, model, text string, promptRunes int) *reply {
	prefix := "cmpl-sim-"
	if chat {
		prefix = "chatcmpl-sim-"
	}
	return &reply{
		id:               prefix + strconv.FormatUint(n, 10),
		chat:             chat,
		created:          time.Now().Unix(),
		model:            model,
		fingerprint:      fingerprint,
		promptTokens:     estimateTokens(promptRunes),
		completionTokens: estimateTokens(utf8.RuneCountInString(text)),
	}
}

// stream answers r as server-sent events, each flushed as it is written,
// the content chunks after the first delay apart.
func (s *Server) stream(ctx *fasthttp.RequestCtx, r *reply, text string, delay time.Duration) {
	s.eventStream(ctx, "chat", func(w *bufio.Writer, sc *scratch, done <-chan struct{}) {
		emit := func(kind chunkKind, piece string) bool {
			sc.out = r.appendChunk(sc.out[:0], kind, piece)
			return flushed(w, sc.out)
		}
		if r.chat && !emit(chunkRole, "") {
			return
		}
		if !s.sendPieces(done, text, delay, !r.chat, func(piece string) bool { return emit(chunkContent, piece) }) {
			return
		}
		if !emit(chunkStop, "") {
			return
		}
		if r.includeUsage && !emit(chunkUsage, "") {
			return
		}
		flushed(w, []byte(doneEvent))
	})
}

// eventStream answers with server-sent events that write writes, given
// the stream, a scratch buffer and the channel closed at shutdown.
// fasthttp runs the writer in a goroutine of its own that it does not
// wait for once the client has gone; Serve waits for it instead. what
// names the stream in a panic's log line.
func (s *Server) eventStream(ctx *fasthttp.RequestCtx, what string, write func(w *bufio.Writer, sc *scratch, done <-chan struct{})) {
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	done := ctx.Done()
	s.streams.Add(1)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.streams.Done()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("teachersim: "+what+" stream writer panic", "panic", p)
			}
		}()
		sc := s.getScratch()
		defer s.putScratch(sc)
		write(w, sc, done)
	})
}

// flushed writes b to the stream and flushes it, so that it reaches the
// client now; false once the client has gone.
func flushed(w *bufio.Writer, b []byte) bool {
	if _, err := w.Write(b); err != nil {
		return false
	}
	return w.Flush() == nil
}

// sendPieces emits text in the pieces nextPiece cuts, delay apart (and
// delay before the first too unless first), and reports whether every
// emit succeeded. At shutdown the rest goes at once.
func (s *Server) sendPieces(done <-chan struct{}, text string, delay time.Duration, first bool, emit func(piece string) bool) bool {
	for rest := text; rest != ""; {
		n := nextPiece(rest)
		if !first && delay > 0 && !s.sleep(done, delay) {
			delay = 0 // shutting down: finish the stream at once
		}
		first = false
		if !emit(rest[:n]) {
			return false
		}
		rest = rest[n:]
	}
	return true
}

// embeddings serves POST /v1/embeddings.
func (s *Server) embeddings(ctx *fasthttp.RequestCtx) {
	var req embeddingRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		s.writeError(ctx, errBadJSON)
		return
	}
	if req.Model == "" {
		s.writeError(ctx, missingParam("model"))
		return
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		s.writeError(ctx, missingParam("input"))
		return
	}
	inputs, ok := embeddingInputs(req.Input)
	if !ok {
		s.writeError(ctx, invalidParam("input", "Invalid type for 'input': expected a string or a non-empty array of strings."))
		return
	}
	var base64 bool
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		base64 = true
	default:
		s.writeError(ctx, invalidParam("encoding_format", fmt.Sprintf("Invalid value for 'encoding_format': %q. Supported values are: 'float' and 'base64'.", req.EncodingFormat)))
		return
	}
	dims := s.cfg.EmbeddingDims
	if req.Dimensions != 0 {
		if req.Dimensions < 1 || req.Dimensions > maxEmbeddingDims {
			s.writeError(ctx, invalidParam("dimensions", fmt.Sprintf("Invalid value for 'dimensions': must be in [1,%d], got %d.", maxEmbeddingDims, req.Dimensions)))
			return
		}
		dims = req.Dimensions
	}
	if !s.prelude(ctx, s.settings.Load()) {
		return
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	if cap(sc.vec) < dims {
		sc.vec = make([]float32, dims)
	}
	vec := sc.vec[:dims]
	b := append(sc.out[:0], `{"object":"list","data":[`...)
	tokens := 0
	for i, in := range inputs {
		tokens += estimateTokens(utf8.RuneCountInString(in))
		embed(vec, in)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if base64 {
			b, sc.raw = appendBase64(b, sc.raw, vec)
		} else {
			b = appendFloats(b, vec)
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = appendString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(tokens), 10)
	b = append(b, "}}"...)
	sc.out = b
	s.writeJSON(ctx, b)
}

// buildModels renders the /v1/models bodies once.
func (s *Server) buildModels() {
	s.models = make(map[string][]byte, len(s.cfg.Models))
	list := []byte(`{"object":"list","data":[`)
	for i, id := range s.cfg.Models {
		m := appendString([]byte(`{"id":`), id)
		m = append(m, `,"object":"model","created":`...)
		m = strconv.AppendInt(m, s.created, 10)
		m = append(m, `,"owned_by":"teacher-sim"}`...)
		s.models[id] = m
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, m...)
	}
	s.modelList = append(list, "]}"...)
}

// control serves the /sim/ paths, which tests use to steer the simulator.
func (s *Server) control(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case pathSimConfig:
		switch string(ctx.Method()) {
		case fasthttp.MethodGet:
			s.writeSettings(ctx, s.settings.Load())
		case fasthttp.MethodPost:
			s.updateSettings(ctx)
		default:
			s.allow(ctx, fasthttp.MethodPost)
		}
	case pathSimStats:
		if s.allow(ctx, fasthttp.MethodGet) {
			body, _ := json.Marshal(s.Stats())
			s.writeJSON(ctx, body)
		}
	default:
		s.notFound(ctx)
	}
}

func (s *Server) writeSettings(ctx *fasthttp.RequestCtx, set *settings) {
	body, err := json.Marshal(set)
	if err != nil {
		panic(err) // settings always marshal
	}
	s.writeJSON(ctx, body)
}

func (s *Server) updateSettings(ctx *fasthttp.RequestCtx) {
	var p settingsPatch
	dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		s.writeError(ctx, &apiError{status: fasthttp.StatusBadRequest, message: "parsing /sim/config body: " + err.Error(), typ: "invalid_request_error"})
		return
	}
	s.settingsMu.Lock()
	set, err := p.apply(s.settings.Load())
	if err == nil {
		s.settings.Store(set)
	}
	s.settingsMu.Unlock()
	if err != nil {
		e := &apiError{status: fasthttp.StatusBadRequest, message: err.Error(), typ: "invalid_request_error"}
		var fe *fieldError
		if errors.As(err, &fe) {
			e.param = fe.field
		}
		s.writeError(ctx, e)
		return
	}
	s.log.Info("teachersim: settings changed", "latency", set.Latency, "jitter", set.Jitter,
		"chunk_delay", set.ChunkDelay, "error_rate", set.ErrorRate, "error_status", set.ErrorStatus,
		"swap_labels", set.SwapLabels, "unknown_answer", set.UnknownAnswer)
	s.writeSettings(ctx, set)
}
