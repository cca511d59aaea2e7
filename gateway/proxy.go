package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/internal/openai"
)

// hopHeaders are not forwarded in either direction (RFC 9110 7.6.1), nor
// are headers the gateway sets itself. Expect: the gateway answered a
// 100-continue itself before it read the body.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Host": true, "Accept-Encoding": true, "Authorization": true,
	"X-Understudy-Domain": true, "Date": true, "Server": true, "Expect": true,
}

// clientCredentials are the client's own credentials and identity beyond
// Authorization: its cookies, its OpenAI organization and project, and
// Azure's and others' key headers. With the shared teacher key they would
// reach the teacher beside the gateway's key (a client choosing another
// organization's billing, or sending one user's cookies), so they are
// forwarded only with teacher.pass_client_authorization; the same goes
// for the teacher's Set-Cookie, which would otherwise reach every client.
var clientCredentials = map[string]bool{
	"Cookie": true, "Openai-Organization": true, "Openai-Project": true, "Api-Key": true, "X-Api-Key": true,
}

// forwardUp reports whether a client request header goes to the teacher.
// A relayed request (relay) keeps the client's Accept-Encoding: the
// gateway passes its answer on unread.
func (t *Teacher) forwardUp(k []byte, relay bool) bool {
	switch {
	case hopHeaders[string(k)]:
		return relay && string(k) == "Accept-Encoding"
	case clientCredentials[string(k)]:
		return t.passAuth
	}
	return true
}

// forwardDown reports whether a teacher's response header goes to the
// client.
func (t *Teacher) forwardDown(k string) bool {
	return !hopHeaders[k] && (t.passAuth || k != "Set-Cookie")
}

// teacherCall says how to ask the teacher and what to do with its answer.
type teacherCall struct {
	// stream: the client asked for an event stream.
	stream bool
	// api is the API of an eligible request, whose answer is read.
	api openai.Endpoint
	// body, when not nil, is sent instead of the client's body.
	body []byte
	// spare: a server error (5xx) of the teacher is returned as an error
	// instead of relayed, so that a student may answer in its place.
	spare bool
	// answered, when set, receives a 200 answer's whole text once it was
	// relayed: before askTeacher returns for JSON, when the stream ended
	// complete for a stream (stream is then true). It is not called for
	// an answer without one (a tool call, an answer cut off, a torn
	// stream).
	answered func(a openai.Answer, stream bool)
}

// askTeacher sends the client's request to the teacher and relays the
// answer (Caddy's reverseProxy). It returns an error, the apiError the
// client would get, when nothing reached the client: the exchange failed,
// or the teacher answered with a server error and c.spare is set. The
// caller decides what the client gets instead.
//
// Otherwise the answer is relayed as the teacher sent it: status, headers
// and body unchanged; an event stream event by event, after the handler
// returned.
func (s *Server) askTeacher(ctx *fasthttp.RequestCtx, info *reqInfo, c teacherCall) error {
	req := fasthttp.AcquireRequest()
	s.upstreamRequest(ctx, req, c.body)
	x := exchange{resp: fasthttp.AcquireResponse(), start: time.Now(), info: info}
	x.resp.StreamBody = c.stream
	var err error
	x.done, err = s.teacher.Do(s.stop, req, x.resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		info.teacherTime = time.Since(x.start)
		x.end(nil) // Do told the breaker
		s.failures.warn(errorReason(err), "teacher exchange failed", "request_id", info.id, "endpoint", info.endpoint, "err", err)
		return s.teacher.transportError(err)
	}
	if status := x.resp.StatusCode(); c.spare && status >= 500 {
		info.teacherTime = time.Since(x.start)
		x.end(nil) // Do counted the failure
		return s.teacher.statusError(status)
	}
	return s.relayAnswer(ctx, x, c)
}

// exchange is one request to the teacher.
type exchange struct {
	resp  *fasthttp.Response
	done  func(error) // the breaker's; nil when Do failed
	start time.Time
	info  *reqInfo
}

// end is the one place an exchange ends: its response is released and
// the breaker told the outcome of relaying it.
func (x exchange) end(err error) {
	fasthttp.ReleaseResponse(x.resp)
	if x.done != nil {
		x.done(err)
	}
}

// relayAnswer relays a teacher's answer to the client (Caddy's
// finalizeResponse) and ends the exchange: at once for a JSON answer,
// when the stream ends for an event stream. It returns an error only when
// a streamed body that is not an event stream could not be read; nothing
// reached the client then.
func (s *Server) relayAnswer(ctx *fasthttp.RequestCtx, x exchange, c teacherCall) error {
	resp, info := x.resp, x.info
	status := resp.StatusCode()
	streamed := c.stream && resp.BodyStream() != nil
	eventStream := streamed && bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream"))
	var body []byte
	switch {
	case !streamed:
		info.teacherTime = time.Since(x.start)
	case !eventStream:
		// A streaming request answered without a stream (an error, say).
		var err error
		body, err = io.ReadAll(resp.BodyStream())
		info.teacherTime = time.Since(x.start)
		x.end(err)
		if err != nil {
			s.failures.warn(errorReason(err), "teacher exchange failed", "request_id", info.id, "endpoint", info.endpoint, "err", err)
			return s.teacher.transportError(err)
		}
	}
	ctx.SetStatusCode(status)
	for k, v := range resp.Header.All() {
		if s.teacher.forwardDown(string(k)) {
			ctx.Response.Header.SetBytesKV(k, v)
		}
	}
	switch {
	case !streamed:
		ctx.SetBody(resp.Body())
		var a openai.Answer
		ok := c.answered != nil && status == fasthttp.StatusOK
		if ok && c.api == openai.ResponsesAPI {
			a, ok = openai.ParseResponse(resp.Body())
		} else if ok {
			a, ok = openai.ParseAnswer(resp.Body())
		}
		x.end(nil)
		if ok {
			c.answered(a, false)
		}
	case !eventStream:
		ctx.SetBody(body)
	default:
		info.streaming = true
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.Response.Header.Set("X-Accel-Buffering", "no")
		var tee answerTee
		switch {
		case c.answered == nil || status != fasthttp.StatusOK:
		case c.api == openai.ResponsesAPI:
			tee = &openai.ResponseStreamAnswer{}
		default:
			tee = &openai.StreamAnswer{}
		}
		extend := s.writeDeadline(ctx)
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			err := s.relay(w, resp, x.start, c.api, tee, extend)
			info.teacherTime = time.Since(x.start)
			x.end(err)
			if tee != nil && err == nil {
				if a, ok := tee.Answer(); ok {
					c.answered(a, true)
				}
			}
			s.finish(info, status)
		})
	}
	return nil
}

// upstreamRequest builds the teacher's copy of a request the gateway reads:
// upstreamHead's, and the body the gateway read (or body, when not nil).
// Compression is not asked for, so the gateway can read what the teacher
// answers.
func (s *Server) upstreamRequest(ctx *fasthttp.RequestCtx, req *fasthttp.Request, body []byte) {
	s.upstreamHead(ctx, req, false)
	if body == nil {
		body = ctx.PostBody()
	}
	req.SetBodyRaw(body)
}

// upstreamHead builds the head of the teacher's copy of the client's
// request: same method, path below the base URL, query, headers (less
// hop-by-hop ones, the gateway's own and, with the shared key, the
// client's credentials: forwardUp); the teacher's key, or the client's
// when teacher.pass_client_authorization is set.
func (s *Server) upstreamHead(ctx *fasthttp.RequestCtx, req *fasthttp.Request, relay bool) {
	for k, v := range ctx.Request.Header.All() {
		if s.teacher.forwardUp(k, relay) {
			req.Header.SetBytesKV(k, v)
		}
	}
	req.Header.SetMethodBytes(ctx.Method())
	req.SetRequestURIBytes(s.teacher.appendURI(make([]byte, 0, len(s.teacher.base)+64), ctx))
	req.Header.SetHost(s.teacher.host)
	if a := s.teacher.authorization(ctx); a != "" {
		req.Header.Set("Authorization", a)
	}
}

// appendURI appends the teacher's URI of the client's request to dst: the
// base URL, the path below /v1 (escaped again: ctx.Path() is decoded) and
// the query as the client sent it.
func (t *Teacher) appendURI(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	dst = append(dst, t.base...)
	dst = appendPath(dst, bytes.TrimPrefix(ctx.Path(), []byte("/v1")))
	if q := ctx.URI().QueryString(); len(q) > 0 {
		dst = append(dst, '?')
		dst = append(dst, q...)
	}
	return dst
}

// authorization is the Authorization header the teacher gets: its own key,
// or the client's header when teacher.pass_client_authorization is set, or
// none.
func (t *Teacher) authorization(ctx *fasthttp.RequestCtx) string {
	if t.passAuth {
		return string(ctx.Request.Header.Peek("Authorization"))
	}
	if t.apiKey != "" {
		return "Bearer " + t.apiKey
	}
	return ""
}

// writeDeadline returns a function that gives the request's client
// gateway.write_timeout from now for its next write. A streamed answer is
// written from another goroutine (fasthttp copies it to the connection),
// so a client that stops reading blocks that copy; the deadline ends it,
// the stream's writer fails, and the teacher's stream is released instead
// of held until teacher.timeout.
func (s *Server) writeDeadline(ctx *fasthttp.RequestCtx) func() {
	c, timeout := ctx.Conn(), s.cfg.Gateway.WriteTimeout
	return func() { _ = c.SetWriteDeadline(time.Now().Add(timeout)) }
}

// answerTee rebuilds an answer from the lines of its event stream:
// openai.StreamAnswer for chat and completions, openai.ResponseStreamAnswer
// for the Responses API.
type answerTee interface {
	Line(l []byte)
	Discard()
	Answer() (openai.Answer, bool)
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// maxEventLine bounds one SSE line the relay holds whole. OpenAI's chunks
// are a few hundred bytes; a longer line is passed on in pieces, and its
// answer is not kept.
const maxEventLine = 1 << 20

// errIncompleteStream: the teacher's stream ended (EOF) without the event
// that ends it ("data: [DONE]"; response.completed, failed or incomplete
// on the Responses API). Its answer is torn: the client is told, nothing
// is logged.
var errIncompleteStream = errors.New("teacher stream ended before its last event")

// doneLine is the data line that ends a chat or completions stream.
var doneLine = []byte("data: [DONE]")

// relay copies an SSE stream from the teacher to the client, flushing after
// every event so each reaches the client as soon as the teacher sent it. It
// returns nil when the stream ended complete, with "data: [DONE]";
// errClientGone when the client went away (the teacher's stream is then
// abandoned); or, after telling the client in a final error event, the
// teacher's read error or errIncompleteStream.
//
// Only whole lines reach the client: a line the teacher tore off is
// dropped, so the error event that follows parses, and the SDK raises an
// API error instead of a JSON syntax error.
//
// When sc is not nil, every line also goes to it, to rebuild the answer.
// api says which event ends the stream, and how the error event is sent:
// on the Responses API it is an "event: error". extend gives the client
// gateway.write_timeout for what is written next (writeDeadline).
func (s *Server) relay(w *bufio.Writer, resp *fasthttp.Response, start time.Time, api openai.Endpoint, sc answerTee, extend func()) error {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(resp.BodyStream())
	defer func() { br.Reset(nil); readerPool.Put(br) }()
	var long []byte // a line longer than br's buffer, being assembled
	first, complete, midEvent, passing := true, false, false, false
	for {
		line, err := br.ReadSlice('\n')
		extend()
		if len(long) > 0 || err == bufio.ErrBufferFull {
			long = append(long, line...)
			if err == bufio.ErrBufferFull {
				if len(long) >= maxEventLine {
					// Too long to hold: pass it on as it comes.
					if sc != nil {
						sc.Discard()
					}
					if _, werr := w.Write(long); werr != nil {
						return errClientGone
					}
					long, midEvent, passing = long[:0], true, true
				}
				continue
			}
			line = long
		}
		if err == nil {
			text := bytes.TrimRight(line, "\r\n")
			if sc != nil && !passing {
				sc.Line(line)
			}
			if _, werr := w.Write(line); werr != nil {
				return errClientGone
			}
			midEvent = len(text) > 0 || passing
			passing = false
			if api == openai.ResponsesAPI && openai.ResponseStreamEnd(text) || bytes.Equal(text, doneLine) {
				complete = true
			}
			if !midEvent { // blank line: end of an event
				if werr := w.Flush(); werr != nil {
					return errClientGone
				}
				if first {
					first = false
					s.m.teacherTTFT.Observe(time.Since(start).Seconds())
				}
			}
		}
		long = long[:0]
		switch {
		case err == nil:
			continue
		case err == io.EOF && complete:
			if werr := w.Flush(); werr != nil {
				return errClientGone
			}
			return nil
		case err == io.EOF:
			err = errIncompleteStream
			s.m.teacherErrors.WithLabelValues("incomplete_stream").Inc()
		default:
			s.m.teacherErrors.WithLabelValues("stream").Inc()
		}
		if midEvent {
			_, _ = w.WriteString("\n") // end the event the torn line was part of
		}
		msg := &openai.Error{
			Message: "The teacher's stream broke off before the answer was complete (" + streamFailure(err) + ").",
			Type:    "server_error", Code: "teacher_stream_incomplete",
		}
		if api == openai.ResponsesAPI {
			_, _ = w.WriteString("event: error\n")
		}
		_, _ = w.WriteString("data: ")
		_, _ = w.Write(msg.Body())
		_, _ = w.WriteString("\n\n")
		_ = w.Flush()
		return err
	}
}

// streamFailure says in a few words how a teacher stream failed.
func streamFailure(err error) string {
	if errors.Is(err, errIncompleteStream) {
		return "it ended without its last event"
	}
	return errorReason(err)
}
