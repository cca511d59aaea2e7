package gateway

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// limitListener is the client-facing listener. It keeps the process alive
// and its file descriptors bounded whatever clients do:
//
//   - It caps the connections open at once. A connection past the cap is
//     answered "503 Service Unavailable" with an OpenAI error object and
//     Retry-After, then closed: a clear refusal, where blocking Accept
//     would leave clients hanging in the kernel's backlog.
//   - Accept errors that pass (EMFILE, ENFILE, ECONNABORTED, ...) are waited
//     out with a backoff and counted, as net/http's server does; fasthttp
//     would return from Serve on them and the process would exit.
//
// Refusals are written by one goroutine with a bounded queue, so a flood of
// connections never blocks Accept; when that queue is full the connection
// is closed at once.
type limitListener struct {
	net.Listener
	max    int64
	open   atomic.Int64
	log    *slog.Logger
	m      *listenerMetrics
	refuse chan net.Conn
	done   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// listenerMetrics count what the listener did that no request shows.
type listenerMetrics struct {
	open         prometheus.GaugeFunc
	refused      prometheus.Counter
	acceptErrors *prometheus.CounterVec
}

// refusalBody is the whole HTTP answer to a connection over the cap.
var refusalBody = func() []byte {
	body := `{"error":{"message":"The gateway has too many open connections; retry shortly.","type":"server_error","param":null,"code":"too_many_connections"}}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nX-Should-Retry: true\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// newLimitListener wraps ln; max is the connection cap (at least 1).
func newLimitListener(ln net.Listener, max int, log *slog.Logger, reg prometheus.Registerer) *limitListener {
	l := &limitListener{Listener: ln, max: int64(max), log: log, refuse: make(chan net.Conn, 64), done: make(chan struct{})}
	l.m = &listenerMetrics{
		open: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "open_connections",
			Help: "Client connections open now (the cap is gateway.max_conns).",
		}, func() float64 { return float64(l.open.Load()) }),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "refused_connections_total",
			Help: "Client connections answered 503 and closed because gateway.max_conns were open.",
		}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "understudy", Subsystem: "gateway", Name: "accept_errors_total",
			Help: "Errors accepting client connections that the gateway waited out, by reason (fd_limit, other).",
		}, []string{"reason"}),
	}
	if reg != nil {
		// A second Serve on the same registry keeps the first's series.
		for _, c := range []prometheus.Collector{l.m.open, l.m.refused, l.m.acceptErrors} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					log.Warn("registering listener metrics", "err", err)
				}
			}
		}
	}
	l.wg.Add(1)
	go l.runRefusals()
	return l
}

// Accept returns the next connection under the cap. It returns an error
// only when the listener is closed.
func (l *limitListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			select {
			case <-l.done:
				return nil, net.ErrClosed
			default:
			}
			reason := "other"
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				reason = "fd_limit"
			}
			l.m.acceptErrors.WithLabelValues(reason).Inc()
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if backoff == time.Second || backoff == 5*time.Millisecond {
				l.log.Warn("accepting a client connection failed; waiting and retrying", "err", err, "wait", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.m.refused.Inc()
			select {
			case l.refuse <- c:
			default:
				_ = c.Close()
			}
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

// runRefusals answers connections over the cap: it reads what the client
// sent within a moment (closing a socket with unread data would reset it
// and lose the answer), writes the 503 and closes.
func (l *limitListener) runRefusals() {
	defer l.wg.Done()
	buf := make([]byte, 4096)
	for {
		select {
		case <-l.done:
			for {
				select {
				case c := <-l.refuse:
					_ = c.Close()
				default:
					return
				}
			}
		case c := <-l.refuse:
			_ = c.SetDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Read(buf)
			_, _ = c.Write(refusalBody)
			if tc, ok := c.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			_ = c.Close()
		}
	}
}

// Close closes the listener and stops the refusal goroutine. It is safe to
// call more than once.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() {
		close(l.done)
		l.wg.Wait()
	})
	return err
}

// countedConn gives its slot back when closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
	// linger: the gateway answered before reading all the client sent (a
	// malformed request, headers too large), so Close lingers.
	linger atomic.Bool
}

// lingerOnClose marks the request's connection to linger when it closes:
// the gateway answers before reading all the client sent.
func lingerOnClose(ctx *fasthttp.RequestCtx) {
	if c, ok := ctx.Conn().(*countedConn); ok {
		c.linger.Store(true)
	}
}

// Lingering close: how long, and how much, a connection closed with
// unread input drains it first.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// Close closes the connection and gives its slot back. A connection marked
// to linger first shuts its writing side and drains what the client is
// still sending, for a moment, in the background (as net/http does):
// closing a socket with unread data resets it, and the client would lose
// the answer written just before.
func (c *countedConn) Close() error {
	if !c.linger.Load() {
		err := c.Conn.Close()
		c.once.Do(func() { c.l.open.Add(-1) })
		return err
	}
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
	}
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
		_ = c.Conn.Close()
		c.once.Do(func() { c.l.open.Add(-1) })
	}()
	return nil
}
