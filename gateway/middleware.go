package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Middleware wraps a handler. Server chains them in the order recover →
// request id → metrics → auth → dispatch.
type middleware func(fasthttp.RequestHandler) fasthttp.RequestHandler

// chain applies mws so that the first is outermost.
func chain(h fasthttp.RequestHandler, mws ...middleware) fasthttp.RequestHandler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// reqInfo is what the middleware and handlers learn about one request. It
// is allocated per request and may outlive the handler (a stream's writer
// finishes it).
type reqInfo struct {
	start       time.Time
	id          string
	endpoint    string // chat_completions, completions, a relayed API family (relayEndpoint), "unknown" (refused before a path was served), or "" (not counted: health, metrics)
	domain      string
	route       string // who answered (a router.Route: teacher, student, deferred, student-fallback), or "" before that is known
	teacherTime time.Duration
	streaming   bool // a stream writer will call finish
}

const infoKey = "understudy.info"

func infoOf(ctx *fasthttp.RequestCtx) *reqInfo {
	if i, ok := ctx.UserValue(infoKey).(*reqInfo); ok {
		return i
	}
	return &reqInfo{} // handler called outside the chain (tests)
}

// recover turns a panic into a 500 with the OpenAI error object.
func (s *Server) recover(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return recoverWith(s.log)(next)
}

// recoverWith is the recover middleware of both servers.
func recoverWith(log *slog.Logger) middleware {
	return func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			defer func() {
				if v := recover(); v != nil {
					log.Error("panic serving request", "path", string(ctx.Path()), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					writeError(ctx, errInternal)
				}
			}()
			next(ctx)
		}
	}
}

// requestID gives every request an id and every response the x-request-id
// (the teacher's when it sent one), X-Understudy-Domain and
// X-Understudy-Route headers; the route is "none" for what the gateway
// answers itself (its errors, health).
func (s *Server) requestID(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		info := &reqInfo{start: time.Now(), id: newRequestID()}
		ctx.SetUserValue(infoKey, info)
		next(ctx)
		h := &ctx.Response.Header
		if len(h.Peek("X-Request-Id")) == 0 {
			h.Set("X-Request-Id", info.id)
		}
		if info.domain != "" {
			h.Set("X-Understudy-Domain", info.domain)
		}
		if info.route != "" {
			h.Set("X-Understudy-Route", info.route)
		} else {
			h.Set("X-Understudy-Route", "none") // answered by the gateway itself
		}
	}
}

// observe records the request's metrics when the handler returns, or, for a
// stream, when the stream ends.
func (s *Server) observe(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		s.m.inFlight.Inc()
		next(ctx)
		if info := infoOf(ctx); !info.streaming {
			s.finish(info, ctx.Response.StatusCode())
		}
	}
}

// finish records a completed request.
func (s *Server) finish(info *reqInfo, status int) {
	s.m.inFlight.Dec()
	if info.endpoint == "" {
		return // health, readiness and metrics scrapes are not counted
	}
	route := info.route
	if route == "" {
		route = "none"
	}
	total := time.Since(info.start)
	s.m.requests.WithLabelValues(info.endpoint, s.metricDomains.Name(info.domain), route, strconv.Itoa(status)).Inc()
	s.m.duration.WithLabelValues(info.endpoint, route).Observe(total.Seconds())
	if info.teacherTime > 0 {
		s.m.overhead.WithLabelValues(info.endpoint).Observe((total - info.teacherTime).Seconds())
		s.m.teacherTime.WithLabelValues(info.endpoint).Observe(info.teacherTime.Seconds())
	}
	if status >= 500 {
		s.log.Warn("request failed", "request_id", info.id, "endpoint", info.endpoint, "domain", info.domain,
			"status", status, "duration", total)
	} else if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("request", "request_id", info.id, "endpoint", info.endpoint, "domain", info.domain,
			"route", route, "status", status, "duration", total, "teacher", info.teacherTime)
	}
}

// auth checks gateway keys on the API paths when any are configured, and
// on /metrics with metrics.require_api_key. The comparison is constant-time over hashes, so neither content nor length
// leaks.
func (s *Server) auth(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if len(s.keys) == 0 || !hasPrefix(ctx.Path(), "/v1/") && !(s.cfg.Metrics.RequireAPIKey && string(ctx.Path()) == "/metrics") {
			next(ctx)
			return
		}
		key, ok := bearer(ctx.Request.Header.Peek("Authorization"))
		if !ok {
			key, ok = protocolKey(ctx.Request.Header.Peek("Sec-WebSocket-Protocol"))
		}
		if !ok {
			writeError(ctx, &apiError{Status: fasthttp.StatusUnauthorized, Type: "invalid_request_error", Code: "missing_api_key",
				Message: "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'."})
			return
		}
		sum := sha256.Sum256(key)
		match := 0
		for i := range s.keys {
			match |= subtle.ConstantTimeCompare(sum[:], s.keys[i][:])
		}
		if match != 1 {
			writeError(ctx, &apiError{Status: fasthttp.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key",
				Message: "Incorrect API key provided."})
			return
		}
		next(ctx)
	}
}

// keyProtocol prefixes the key a browser's WebSocket client sends as a
// subprotocol, since a browser cannot set Authorization on an upgrade
// (OpenAI's Realtime API: "openai-insecure-api-key.KEY").
const keyProtocol = "openai-insecure-api-key."

// protocolKey returns the key a Sec-WebSocket-Protocol list carries.
func protocolKey(h []byte) ([]byte, bool) {
	for p := range bytes.SplitSeq(h, []byte(",")) {
		if k, ok := bytes.CutPrefix(bytes.TrimSpace(p), []byte(keyProtocol)); ok && len(k) > 0 {
			return k, true
		}
	}
	return nil, false
}

// withoutKeyProtocol returns a Sec-WebSocket-Protocol list without the key
// it may carry: a gateway key is the gateway's, not the teacher's.
func withoutKeyProtocol(h []byte) []byte {
	var out []byte
	for p := range bytes.SplitSeq(h, []byte(",")) {
		p = bytes.TrimSpace(p)
		if len(p) == 0 || bytes.HasPrefix(p, []byte(keyProtocol)) {
			continue
		}
		if len(out) > 0 {
			out = append(out, ", "...)
		}
		out = append(out, p...)
	}
	return out
}

// bearer returns the key of an "Authorization: Bearer KEY" header.
func bearer(h []byte) ([]byte, bool) {
	const p = "bearer "
	if len(h) <= len(p) || !bytes.EqualFold(h[:len(p)], []byte(p)) {
		return nil, false
	}
	return h[len(p):], true
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// newRequestID returns "req_" and 24 random hex digits.
func newRequestID() string {
	var b [12]byte
	a, c := rand.Uint64(), rand.Uint32()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
	}
	for i := range 4 {
		b[8+i] = byte(c >> (8 * i))
	}
	return "req_" + hex.EncodeToString(b[:])
}
