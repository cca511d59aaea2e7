package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// chatCompletions handles POST /v1/chat/completions.
func (s *Server) chatCompletions(ctx *fasthttp.RequestCtx) error {
	r, err := ParseChatRequest(ctx.PostBody())
	if err != nil {
		return err
	}
	return s.routeRequest(ctx, r)
}

// completions handles POST /v1/completions.
func (s *Server) completions(ctx *fasthttp.RequestCtx) error {
	r, err := ParseCompletionRequest(ctx.PostBody())
	if err != nil {
		return err
	}
	return s.routeRequest(ctx, r)
}

// passThrough relays a request the gateway does not interpret (models,
// embeddings) to the teacher.
func (s *Server) passThrough(ctx *fasthttp.RequestCtx) error {
	infoOf(ctx).route = "teacher"
	return s.proxy(ctx, infoOf(ctx), nil, nil)
}

// hopHeaders are not forwarded in either direction (RFC 9110 7.6.1), nor
// are headers the gateway sets itself.
var hopHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Content-Length": true, "Host": true, "Accept-Encoding": true, "Authorization": true,
	"X-Understudy-Domain": true, "Date": true, "Server": true,
}

// proxy sends the client's request to the teacher and relays the answer:
// status, headers and body unchanged; an event stream event by event. r is
// the parsed request of a completion (nil for pass-through endpoints); the
// answer to an eligible one is scored (sc) and logged. When the teacher
// fails, a promoted student may answer instead; otherwise the teacher's
// failure is the error returned.
func (s *Server) proxy(ctx *fasthttp.RequestCtx, info *reqInfo, r *Request, sc *scoring) error {
	stream := r != nil && r.Stream
	capture := r != nil && r.Ineligible == ""
	req := fasthttp.AcquireRequest()
	s.upstreamRequest(ctx, req)
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = stream
	start := time.Now()
	done, err := s.teacher.Do(s.stop, req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		info.teacherTime = time.Since(start)
		fasthttp.ReleaseResponse(resp)
		s.log.Warn("teacher exchange failed", "request_id", info.id, "endpoint", info.endpoint, "err", err)
		if !s.fallback(ctx, info, r) {
			return s.teacher.transportError(err)
		}
		return nil
	}
	if resp.StatusCode() >= 500 && capture {
		info.teacherTime = time.Since(start)
		if s.fallback(ctx, info, r) {
			fasthttp.ReleaseResponse(resp)
			done(nil)
			return nil
		}
	}
	ctx.SetStatusCode(resp.StatusCode())
	for k, v := range resp.Header.All() {
		if !hopHeaders[string(k)] {
			ctx.Response.Header.SetBytesKV(k, v)
		}
	}
	if stream && resp.BodyStream() != nil {
		if bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
			info.streaming = true
			ctx.Response.Header.Set("Cache-Control", "no-cache")
			ctx.Response.Header.Set("X-Accel-Buffering", "no")
			var tee *streamCapture
			if capture && resp.StatusCode() == fasthttp.StatusOK {
				tee = &streamCapture{}
			}
			ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
				status := resp.StatusCode()
				err := s.relay(w, resp, start, tee)
				info.teacherTime = time.Since(start)
				fasthttp.ReleaseResponse(resp)
				done(err)
				if tee != nil && err == nil {
					if a, ok := tee.answer(); ok {
						s.teacherAnswered(info, r, a, true, sc)
					}
				}
				s.finish(info, status)
			})
			return nil
		}
		// A streaming request answered without a stream (an error, say).
		body, err := io.ReadAll(resp.BodyStream())
		info.teacherTime = time.Since(start)
		fasthttp.ReleaseResponse(resp)
		if err != nil {
			done(err)
			return s.teacher.transportError(err)
		}
		done(nil)
		ctx.SetBody(body)
		return nil
	}
	info.teacherTime = time.Since(start)
	ctx.SetBody(resp.Body())
	if capture && resp.StatusCode() == fasthttp.StatusOK {
		if a, ok := parseAnswer(resp.Body()); ok {
			s.teacherAnswered(info, r, a, false, sc)
		}
	}
	fasthttp.ReleaseResponse(resp)
	done(nil)
	return nil
}

// upstreamRequest builds the teacher's copy of the client's request: same
// method, path below the base URL, query, headers (less hop-by-hop ones and
// the gateway's own) and body; the teacher's key, or the client's when
// teacher.pass_client_authorization is set. Compression is not asked for,
// so the gateway can read what the teacher answers.
func (s *Server) upstreamRequest(ctx *fasthttp.RequestCtx, req *fasthttp.Request) {
	for k, v := range ctx.Request.Header.All() {
		if !hopHeaders[string(k)] {
			req.Header.SetBytesKV(k, v)
		}
	}
	req.Header.SetMethodBytes(ctx.Method())
	uri := make([]byte, 0, len(s.teacher.base)+64)
	uri = append(uri, s.teacher.base...)
	uri = append(uri, bytes.TrimPrefix(ctx.Path(), []byte("/v1"))...)
	if q := ctx.URI().QueryString(); len(q) > 0 {
		uri = append(uri, '?')
		uri = append(uri, q...)
	}
	req.SetRequestURIBytes(uri)
	req.Header.SetHost(s.teacher.host)
	switch {
	case s.teacher.passAuth:
		if a := ctx.Request.Header.Peek("Authorization"); len(a) > 0 {
			req.Header.SetBytesV("Authorization", a)
		}
	case s.teacher.apiKey != "":
		req.Header.Set("Authorization", "Bearer "+s.teacher.apiKey)
	}
	req.SetBodyRaw(ctx.PostBody())
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// maxEventLine bounds one SSE line the relay holds whole. OpenAI's chunks
// are a few hundred bytes; a longer line is passed on in pieces, and its
// answer is not kept.
const maxEventLine = 1 << 20

// errIncompleteStream: the teacher's stream ended (EOF) without its final
// "data: [DONE]". Its answer is torn: the client is told, nothing is logged.
var errIncompleteStream = errors.New("teacher stream ended before data: [DONE]")

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
func (s *Server) relay(w *bufio.Writer, resp *fasthttp.Response, start time.Time, sc *streamCapture) error {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(resp.BodyStream())
	defer func() { br.Reset(nil); readerPool.Put(br) }()
	var long []byte // a line longer than br's buffer, being assembled
	first, complete, midEvent, passing := true, false, false, false
	for {
		line, err := br.ReadSlice('\n')
		if len(long) > 0 || err == bufio.ErrBufferFull {
			long = append(long, line...)
			if err == bufio.ErrBufferFull {
				if len(long) >= maxEventLine {
					// Too long to hold: pass it on as it comes.
					if sc != nil {
						sc.bad = true
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
				sc.line(line)
			}
			if _, werr := w.Write(line); werr != nil {
				return errClientGone
			}
			midEvent = len(text) > 0 || passing
			passing = false
			if bytes.Equal(text, doneLine) {
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
		msg, _ := json.Marshal(errorBody{Error: errorObject{
			Message: "The teacher's stream broke off before the answer was complete (" + streamFailure(err) + ").",
			Type:    "server_error", Code: nullable("teacher_stream_incomplete"),
		}})
		_, _ = w.WriteString("data: ")
		_, _ = w.Write(msg)
		_, _ = w.WriteString("\n\n")
		_ = w.Flush()
		return err
	}
}

// streamFailure says in a few words how a teacher stream failed.
func streamFailure(err error) string {
	if errors.Is(err, errIncompleteStream) {
		return "it ended without data: [DONE]"
	}
	return errorReason(err)
}
