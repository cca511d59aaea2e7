package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// WebSocket upgrades (the Realtime API, GET /v1/realtime with Upgrade:
// websocket) are relayed as Caddy's reverse proxy relays them: the gateway
// sends the client's upgrade request to the teacher on a connection of its
// own, with the teacher's Authorization as upstreamHead gives it; when the
// teacher switches protocols, the client gets the teacher's 101 with its
// headers (Upgrade, Connection, Sec-WebSocket-Accept, -Protocol,
// -Extensions, ...) and the bytes flow both ways, unread, until either side
// closes. Any other answer (401, 404, ...) is relayed as a plain response.
//
// The connect is bounded by teacher.connect_timeout and the teacher's
// answer to the upgrade by teacher.first_byte_timeout; a session has no
// time limit (OpenAI's last up to an hour), and ends when either side
// closes or the gateway shuts down. The breaker counts the handshake: a
// failed connect, no answer, or a 5xx is a failure.

// isWebSocketUpgrade reports whether h asks to switch to WebSocket.
func isWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	return h.IsGet() && h.ConnectionUpgrade() && bytes.EqualFold(h.Peek("Upgrade"), []byte("websocket"))
}

// relayWebSocket relays a WebSocket upgrade to the teacher. It returns an
// error, the apiError the client gets, when the handshake with the teacher
// failed.
func (s *Server) relayWebSocket(ctx *fasthttp.RequestCtx, info *reqInfo) error {
	t := s.teacher
	done, err := t.breaker.Allow()
	if err != nil {
		t.metrics.teacherErrors.WithLabelValues("breaker_open").Inc()
		return t.transportError(ErrTeacherUnavailable)
	}
	start := time.Now()
	up, br, resp, err := t.upgrade(s.stop, s.upgradeRequest(ctx))
	info.teacherTime = time.Since(start)
	if err != nil {
		done(err)
		t.metrics.teacherErrors.WithLabelValues(errorReason(err)).Inc()
		s.log.Warn("teacher websocket handshake failed", "request_id", info.id, "endpoint", info.endpoint, "err", err)
		return t.transportError(err)
	}
	if resp.StatusCode != fasthttp.StatusSwitchingProtocols {
		return s.relayRefusedUpgrade(ctx, info, start, up, resp, done)
	}
	done(nil)
	_ = up.SetDeadline(time.Time{})
	if !s.sessions.add(up) {
		_ = up.Close()
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Message: "The gateway is shutting down."}
	}
	head := switchingHead(resp, info.id)
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) // for the metrics; the hijack handler writes head
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) { s.sessions.pipe(c, up, br, head) })
	return nil
}

// upgradeRequest is the teacher's copy of the client's upgrade request, as
// bytes: the client's headers less the hop-by-hop ones and the gateway's
// own, the upgrade itself, and the teacher's Authorization. With the
// shared teacher key, a key a browser sent as a subprotocol is left out.
func (s *Server) upgradeRequest(ctx *fasthttp.RequestCtx) []byte {
	t := s.teacher
	b := make([]byte, 0, 1024)
	b = append(b, "GET "...)
	b = append(b, t.basePath...)
	b = appendPath(b, bytes.TrimPrefix(ctx.Path(), []byte("/v1")))
	if q := ctx.URI().QueryString(); len(q) > 0 {
		b = append(b, '?')
		b = append(b, q...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nConnection: Upgrade\r\nUpgrade: "...)
	b = append(b, ctx.Request.Header.Peek("Upgrade")...)
	b = append(b, "\r\n"...)
	for k, v := range ctx.Request.Header.All() {
		if !t.forwardUp(k, false) {
			continue
		}
		if !t.passAuth && bytes.EqualFold(k, []byte("Sec-WebSocket-Protocol")) {
			// A browser's key for the gateway stays here.
			if v = withoutKeyProtocol(v); len(v) == 0 {
				continue
			}
		}
		b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
	}
	if a := t.authorization(ctx); a != "" {
		b = append(append(append(b, "Authorization: "...), a...), "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// upgrade connects to the teacher (TLS for an https URL), sends the
// upgrade request and reads the head of the answer. The connection's
// buffered reader holds what the teacher sent after the head.
func (t *Teacher) upgrade(ctx context.Context, req []byte) (net.Conn, *bufio.Reader, *http.Response, error) {
	d := net.Dialer{Timeout: t.cfg.ConnectTimeout}
	c, err := d.DialContext(ctx, "tcp", t.hc.Addr)
	if err != nil {
		return nil, nil, nil, &dialError{err}
	}
	if t.hc.IsTLS {
		cfg := t.hc.TLSConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, t.cfg.ConnectTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, nil, nil, &dialError{err}
		}
		c = tc
	}
	_ = c.SetDeadline(time.Now().Add(t.cfg.FirstByteTimeout))
	if _, err = c.Write(req); err != nil {
		_ = c.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = c.Close()
		return nil, nil, nil, err
	}
	return c, br, resp, nil
}

// relayRefusedUpgrade relays a teacher's answer to an upgrade that is not
// a 101 as a plain response, its body streamed, and closes the teacher's
// connection when the body was relayed.
func (s *Server) relayRefusedUpgrade(ctx *fasthttp.RequestCtx, info *reqInfo, start time.Time, up net.Conn, resp *http.Response,
	done func(error)) error {
	_ = up.SetDeadline(start.Add(s.teacher.cfg.Timeout))
	if resp.StatusCode >= 500 {
		done(errTeacherStatus)
		done = func(error) {}
	}
	ctx.SetStatusCode(resp.StatusCode)
	for k, vs := range resp.Header {
		if !s.teacher.forwardDown(k) {
			continue
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	size := int(resp.ContentLength)
	if size < 0 {
		size = -1
	}
	info.streaming = true
	ctx.SetBodyStream(&relayBody{r: resp.Body, s: s, info: info, start: start, status: resp.StatusCode, size: int64(size),
		end: func(err error) { _ = up.Close(); done(err) }, extend: s.writeDeadline(ctx)}, size)
	return nil
}

// switchingHead is the 101 the client gets: the teacher's status line and
// headers, and the request id.
func switchingHead(resp *http.Response, id string) []byte {
	b := make([]byte, 0, 512)
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\n"...)
	for k, vs := range resp.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate":
			continue
		}
		for _, v := range vs {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		b = append(append(append(b, "X-Request-Id: "...), id...), "\r\n"...)
	}
	b = append(b, "X-Understudy-Route: teacher\r\n"...)
	return append(b, "\r\n"...)
}

// sessions are the WebSocket sessions relayed now. Each is piped by the
// goroutine fasthttp runs a hijacked connection on and one more it starts,
// which it waits for; close ends them all when the gateway shuts down.
type sessions struct {
	mu     sync.Mutex
	open   map[net.Conn]struct{} // the teacher's side of each session
	closed bool
	idle   chan struct{} // closed when closed and no session is left
}

func newSessions() *sessions {
	return &sessions{open: map[net.Conn]struct{}{}, idle: make(chan struct{})}
}

// add registers a session's teacher connection; false once closing.
func (ss *sessions) add(up net.Conn) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.closed {
		return false
	}
	ss.open[up] = struct{}{}
	return true
}

// remove forgets an ended session.
func (ss *sessions) remove(up net.Conn) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.open, up)
	if ss.closed && len(ss.open) == 0 {
		close(ss.idle)
	}
}

// count is the number of sessions open.
func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.open)
}

// close ends every session and refuses new ones, and waits until their
// goroutines have ended or ctx is done. It is safe to call more than once.
func (ss *sessions) close(ctx context.Context) {
	ss.mu.Lock()
	for c := range ss.open {
		_ = c.Close()
	}
	if !ss.closed && len(ss.open) == 0 {
		close(ss.idle)
	}
	ss.closed = true
	ss.mu.Unlock()
	select {
	case <-ss.idle:
	case <-ctx.Done():
	}
}

// pipe writes the 101 head to the client, then copies bytes both ways
// until either side closes, and closes both.
func (ss *sessions) pipe(c net.Conn, up net.Conn, upr *bufio.Reader, head []byte) {
	defer ss.remove(up)
	defer up.Close()
	// fasthttp closes a hijacked connection once the handler returns, and
	// its Close does nothing before that; closing the connection beneath
	// ends a read of the client's side at once.
	client := c
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		client = u.UnsafeConn()
	}
	if _, err := c.Write(head); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(up, c) // client to teacher
		_ = up.Close()
		_ = client.Close()
	})
	_, _ = io.Copy(c, upr) // teacher to client, from what upgrade buffered on
	_ = client.Close()
	_ = up.Close()
	wg.Wait()
}
