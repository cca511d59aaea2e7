package gateway

import (
	"bytes"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/router"
)

// Relayed requests: every /v1 path and method the gateway does not
// interpret (files, uploads, audio, images, batches, fine-tuning, vector
// stores, models, embeddings, ... and whatever the teacher's API adds) goes
// to the teacher unchanged, and its answer comes back unchanged, as Caddy's
// reverse proxy would relay them:
//
//   - Both bodies stream. The request body goes on to the teacher as it
//     arrives from the client (a multipart upload, a binary audio file) and
//     the answer's body reaches the client as it arrives from the teacher (a
//     download, an event stream: every read is flushed), so the gateway
//     holds a few buffers per request whatever the size of the body.
//   - gateway.max_body_size does not apply: it bounds the JSON bodies the
//     gateway parses, and a relayed body is never held whole. Files can be
//     large (OpenAI takes uploads of 512 MB, 8 GB in parts); the teacher
//     enforces its own limits and answers with its own error.
//   - The body may take up to teacher.timeout to arrive, instead of
//     gateway.read_timeout, which is sized for small JSON bodies: an upload
//     is part of the teacher exchange, which teacher.timeout bounds anyway.
//   - A body of up to relayBuffer bytes is read whole before it is sent, so
//     that a request on a kept-alive connection the teacher had closed can
//     be sent again (Caddy's request buffering). A larger or chunked body is
//     sent once: only a failed connect is retried.
//   - A WebSocket upgrade (the Realtime API) is relayed by relayWebSocket.
//
// Only the learned paths' POST bodies are read whole, parsed and limited
// by gateway.max_body_size (readBody); a GET or DELETE of a stored
// response goes to responseByID first, which relays what it does not keep.

// learnedPaths are the endpoints whose POST requests the gateway
// interprets (parses, routes, learns from). Their bodies are read whole
// (readBody); every other /v1 request is relayed as it streams. A path
// listed here whose handler dispatch does not have is still relayed, its
// body read whole.
var learnedPaths = map[string]bool{
	"/v1/chat/completions": true,
	"/v1/completions":      true,
	"/v1/responses":        true,
}

// relayed reports whether a request with this method and (normalized)
// path goes to the teacher as a stream, unread by the gateway: any /v1
// request but a POST to a learned path and a GET or DELETE of a stored
// response, which may be a student's the gateway kept (responseByID).
func relayed(method, path []byte) bool {
	switch m := string(method); {
	case !hasPrefix(path, "/v1/"):
		return false
	case m == fasthttp.MethodPost && learnedPaths[string(path)]:
		return false
	case (m == fasthttp.MethodGet || m == fasthttp.MethodDelete) && hasPrefix(path, "/v1/responses/"):
		return false
	}
	return true
}

// relayedHeader is relayed for a request of which only the header is known
// (fasthttp's HeaderReceived), normalizing its path as ctx.Path() does.
func relayedHeader(h *fasthttp.RequestHeader) bool {
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	if err := u.Parse(nil, h.RequestURI()); err != nil {
		return false
	}
	return relayed(h.Method(), u.Path())
}

// relayEndpoints are the endpoint label values of relayed requests: the
// first path segment after /v1 of OpenAI's API families. Any other path is
// counted as "other", so a client cannot create label values.
var relayEndpoints = func() map[string]string {
	m := map[string]string{"chat": "chat_completions"}
	for _, e := range []string{"assistants", "audio", "batches", "completions", "containers", "conversations",
		"embeddings", "evals", "files", "fine_tuning", "images", "models", "moderations", "organization",
		"realtime", "responses", "threads", "uploads", "vector_stores", "videos"} {
		m[e] = e
	}
	return m
}()

// relayEndpoint is the endpoint label of a relayed path.
func relayEndpoint(path []byte) string {
	seg := bytes.TrimPrefix(path, []byte("/v1/"))
	if i := bytes.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	if e, ok := relayEndpoints[string(seg)]; ok {
		return e
	}
	return "other"
}

// relayBuffer is the largest request body a relay reads whole before
// sending it, so that it can be sent again on a stale connection.
const relayBuffer = 64 << 10

// relayToTeacher relays a request to the teacher and its answer to the
// client, both bodies streamed. It returns an error, the apiError the
// client gets, when nothing reached the client.
func (s *Server) relayToTeacher(ctx *fasthttp.RequestCtx) error {
	info := infoOf(ctx)
	info.endpoint = relayEndpoint(ctx.Path())
	info.route = string(router.RouteTeacher)
	if isWebSocketUpgrade(&ctx.Request.Header) {
		return s.relayWebSocket(ctx, info)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	s.upstreamHead(ctx, req, true)
	var up *uploadBody
	if stream := ctx.RequestBodyStream(); stream != nil {
		n := ctx.Request.Header.ContentLength()
		if n >= 0 && n <= relayBuffer {
			body := make([]byte, n)
			if _, err := io.ReadFull(stream, body); err != nil {
				return bodyReadError(err)
			}
			req.SetBodyRaw(body)
		} else {
			up = &uploadBody{r: stream, want: int64(n)}
			req.SetBodyStream(up, n)
		}
	} else {
		req.SetBodyRaw(ctx.PostBody()) // read whole already: a learned path
	}
	x := exchange{resp: fasthttp.AcquireResponse(), start: time.Now(), info: info}
	x.resp.StreamBody = true
	var err error
	x.done, err = s.teacher.Do(s.stop, req, x.resp)
	if err != nil {
		info.teacherTime = time.Since(x.start)
		x.end(nil) // Do told the breaker
		if up != nil && up.err != nil {
			s.log.Debug("client request body failed while relayed", "request_id", info.id, "endpoint", info.endpoint, "err", up.err)
			return bodyReadError(up.err)
		}
		s.failures.warn(errorReason(err), "teacher exchange failed", "request_id", info.id, "endpoint", info.endpoint, "err", err)
		return s.teacher.transportError(err)
	}
	resp := x.resp
	status := resp.StatusCode()
	ctx.SetStatusCode(status)
	for k, v := range resp.Header.All() {
		if s.teacher.forwardDown(string(k)) {
			ctx.Response.Header.SetBytesKV(k, v)
		}
	}
	stream := resp.BodyStream()
	if stream == nil { // no body: HEAD, 204, 304
		if ctx.IsHead() {
			ctx.Response.Header.SetContentLength(max(resp.Header.ContentLength(), 0))
			ctx.Response.SkipBody = true
		}
		info.teacherTime = time.Since(x.start)
		x.end(nil)
		return nil
	}
	// fasthttp writes a body of unknown size in chunks, flushing each read:
	// an event reaches the client as soon as the teacher sent it. An event
	// stream with a Content-Length is sent that way too, and tells a proxy
	// in front (nginx) not to buffer it, as relayAnswer does.
	size := resp.Header.ContentLength()
	if bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		size = -1
		ctx.Response.Header.Set("X-Accel-Buffering", "no")
	}
	size = max(size, -1)
	info.streaming = true
	ctx.SetBodyStream(&relayBody{r: stream, end: x.end, s: s, info: info, start: x.start, status: status, size: int64(size),
		extend: s.writeDeadline(ctx)}, size)
	return nil
}

// relayBody is a teacher's answer streaming to the client. fasthttp closes
// it when the body was written, or the client went away, or the response
// was dropped; Close ends the exchange (end) and finishes the request's
// metrics.
type relayBody struct {
	r      io.Reader
	end    func(err error) // the exchange's end, given its outcome
	s      *Server
	info   *reqInfo
	start  time.Time // when the teacher was asked
	status int
	size   int64 // the body's length, or -1 when unknown
	n      int64 // bytes read
	err    error // the teacher's read error; io.EOF once the body is complete
	closed bool
	// extend gives the client gateway.write_timeout for the write of
	// what was just read (Server.writeDeadline).
	extend func()
}

func (b *relayBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.extend != nil {
		b.extend()
	}
	b.n += int64(n)
	if err == nil && b.n == b.size {
		err = io.EOF
	}
	if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

// Close ends the exchange: the teacher's body was read to its end, or it
// failed (a teacher failure), or the client stopped taking it (not the
// teacher's fault).
func (b *relayBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.info.teacherTime = time.Since(b.start)
	var err error
	switch {
	case b.err == io.EOF:
	case b.err != nil:
		err = b.err
		b.s.m.teacherErrors.WithLabelValues("stream").Inc()
		b.s.log.Warn("teacher's relayed body broke off", "request_id", b.info.id, "endpoint", b.info.endpoint, "err", err)
	default:
		err = errClientGone
	}
	b.end(err)
	b.s.finish(b.info, b.status)
	return nil
}

// uploadBody is a client's request body streaming to the teacher. It keeps
// the client's read error, so that a client that hangs up or stalls
// mid-upload is not counted as a teacher failure (Teacher.Do).
type uploadBody struct {
	r    io.Reader
	want int64 // Content-Length, or -1 when chunked
	n    int64
	err  error // the client's read error, nil at a complete end
}

func (u *uploadBody) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.n += int64(n)
	switch {
	case err == io.EOF && u.want >= 0 && u.n < u.want:
		err = io.ErrUnexpectedEOF
		fallthrough
	case err != nil && err != io.EOF:
		if u.err == nil {
			u.err = err
		}
	}
	return n, err
}

// clientFailed is the client's error reading the body, if any.
func (u *uploadBody) clientFailed() error { return u.err }

// bodyReadError is the answer to a request whose body could not be read:
// 408 when the client was too slow, 400 when it ended early.
func bodyReadError(err error) *apiError {
	if isTimeout(err) {
		return &apiError{Status: fasthttp.StatusRequestTimeout, Type: "invalid_request_error", Message: "Timed out reading the request."}
	}
	return &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error", Message: "The request body ended before it was complete."}
}

// readBody reads the body of a request the gateway interprets whole, as
// fasthttp would without StreamRequestBody. A body over
// gateway.max_body_size is refused with 413; one of up to twice the limit
// is read first, so that the client gets its 413 instead of a connection
// reset mid-upload; a larger one is refused at once and its connection
// closed, lingering (lingerOnClose) so the client can still read the 413.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) error {
	stream := ctx.RequestBodyStream()
	if stream == nil {
		return nil
	}
	limit := 2 * int64(s.cfg.Gateway.MaxBodySize)
	n := int64(ctx.Request.Header.ContentLength())
	if n > limit {
		ctx.SetConnectionClose()
		lingerOnClose(ctx)
		return s.tooLarge()
	}
	var body []byte
	if n >= 0 {
		body = make([]byte, n)
		if _, err := io.ReadFull(stream, body); err != nil {
			return bodyReadError(err)
		}
	} else { // chunked
		var err error
		if body, err = io.ReadAll(io.LimitReader(stream, limit+1)); err != nil {
			return bodyReadError(err)
		}
		if int64(len(body)) > limit {
			ctx.SetConnectionClose()
			lingerOnClose(ctx)
			return s.tooLarge()
		}
	}
	if len(body) > int(s.cfg.Gateway.MaxBodySize) {
		return s.tooLarge()
	}
	ctx.Request.SetBodyRaw(body)
	return nil
}

// appendPath appends a decoded, normalized path to dst, escaped for a
// request line: a byte that is not allowed in a path segment (RFC 3986
// pchar) or a slash is percent-encoded, so that no path a client sends
// (%20, %0D%0A, %3F in it) can change the teacher's request line or query.
func appendPath(dst, path []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range path {
		if pathByte[c] {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// pathByte marks the bytes appendPath keeps as they are.
var pathByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@/" {
		t[c] = true
	}
	return t
}()
