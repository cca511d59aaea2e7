package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"

	"github.com/understudy-dev/understudy/config"
)

// Errors a teacher exchange ends with that are not the teacher's answer.
var (
	// ErrTeacherUnavailable: the circuit breaker is open (or half-open and
	// busy); the request was not sent.
	ErrTeacherUnavailable = errors.New("teacher unavailable: circuit breaker open")
	// errClientGone: the client went away; not the teacher's fault.
	errClientGone = errors.New("client closed the connection")
	// errTeacherStatus marks a 5xx answer for the breaker.
	errTeacherStatus = errors.New("teacher answered with a server error")
	// errTeacherBusy: every one of teacher.max_conns connections stayed
	// busy for teacher.queue_timeout; the request was not sent. This is the
	// gateway's own back-pressure, not a teacher failure.
	errTeacherBusy = errors.New("no free teacher connection within teacher.queue_timeout")
)

// breaker is the part of gobreaker the teacher client uses: one call per
// exchange, its outcome reported when the exchange (stream included) ends.
type breaker interface {
	Allow() (done func(err error), err error)
	State() gobreaker.State
}

// Teacher sends requests to the upstream model server. It is safe for
// concurrent use.
type Teacher struct {
	hc       *fasthttp.HostClient
	base     string // scheme://host[:port]/path-prefix, no trailing slash
	basePath string // /path-prefix of base, or ""
	host     string
	apiKey   string
	passAuth bool
	cfg      config.Teacher
	breaker  breaker
	// openedAt is when the breaker last opened (unix nanoseconds), for
	// retry-after.
	openedAt atomic.Int64
	metrics  *metrics
}

// newTeacher builds the teacher client from validated config.
func newTeacher(cfg config.Teacher, m *metrics) (*Teacher, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing teacher.url: %w", err)
	}
	isTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		if isTLS {
			addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	t := &Teacher{
		base:     strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		host:     u.Host,
		apiKey:   cfg.APIKey,
		passAuth: cfg.PassClientAuthorization,
		cfg:      cfg,
		metrics:  m,
	}
	firstByte := cfg.FirstByteTimeout
	t.hc = &fasthttp.HostClient{
		Addr:                          addr,
		Name:                          "understudy",
		IsTLS:                         isTLS,
		TLSConfig:                     &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12},
		MaxConns:                      cfg.MaxConns,
		MaxConnWaitTimeout:            cfg.QueueTimeout,
		MaxIdleConnDuration:           cfg.MaxIdleConnDuration,
		MaxIdemponentCallAttempts:     1, // retries are ours, see Do
		DisableHeaderNamesNormalizing: false,
		DisablePathNormalizing:        true,
		// Errors name what was wrong, not the raw response (headers such as
		// Set-Cookie).
		SecureErrorLogMessage: true,
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			if timeout <= 0 || timeout > cfg.ConnectTimeout {
				timeout = cfg.ConnectTimeout
			}
			c, err := fasthttp.DialTimeout(addr, timeout)
			if err != nil {
				return nil, &dialError{err}
			}
			return &firstByteConn{Conn: c, firstByte: firstByte, idle: cfg.IdleTimeout}, nil
		},
	}
	b := cfg.Breaker
	t.breaker = gobreaker.NewTwoStepCircuitBreaker[any](gobreaker.Settings{
		Name:         "teacher",
		MaxRequests:  uint32(b.HalfOpenRequests),
		Interval:     b.Window,
		BucketPeriod: time.Second,
		Timeout:      b.OpenTimeout,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return readyToTrip(b, c) },
		IsExcluded: func(err error) bool {
			return errors.Is(err, errClientGone) || errors.Is(err, errTeacherBusy)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				t.openedAt.Store(time.Now().UnixNano())
			}
			if m != nil {
				m.breakerState.Set(float64(to))
				m.breakerTransitions.WithLabelValues(to.String()).Inc()
			}
			if m != nil && m.log != nil {
				m.log.Warn("teacher circuit breaker changed state", "from", from.String(), "to", to.String())
			}
		},
	})
	return t, nil
}

// readyToTrip is the breaker's rule: a failure ratio over the rolling
// window once it holds min_requests, consecutive failures below that. With
// a consecutive-failures rule alone, a teacher failing 30% of requests at
// high throughput trips within a second and the breaker turns partial
// failure into a total outage.
func readyToTrip(b config.Breaker, c gobreaker.Counts) bool {
	if c.Requests < uint32(b.MinRequests) {
		return c.ConsecutiveFailures >= uint32(b.ConsecutiveFailures)
	}
	return float64(c.TotalFailures) >= b.FailureRatio*float64(c.Requests)
}

// dialError marks an error from connecting: nothing reached the teacher, so
// the request may be retried.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connecting to teacher: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// firstByteConn enforces the first-byte and idle timeouts: when fasthttp
// sets the read deadline for a response (the whole exchange's deadline),
// the connection tightens it to the first-byte timeout until the first
// byte arrives; after that, each read may wait at most the idle timeout
// (teacher.idle_timeout), so a teacher that stalls mid-stream is cut off
// instead of holding the connection, and the client's stream, until the
// exchange's deadline. One exchange uses a connection at a time.
type firstByteConn struct {
	net.Conn
	firstByte time.Duration
	idle      time.Duration
	deadline  time.Time // the exchange's own read deadline
	waiting   bool      // no response byte read yet
}

func (c *firstByteConn) SetReadDeadline(t time.Time) error {
	c.deadline, c.waiting = t, true
	fb := time.Now().Add(c.firstByte)
	if t.IsZero() || fb.Before(t) {
		return c.Conn.SetReadDeadline(fb)
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *firstByteConn) Read(p []byte) (int, error) {
	if !c.waiting && c.idle > 0 {
		if err := c.Conn.SetReadDeadline(c.idleDeadline()); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.waiting {
		c.waiting = false
		if err2 := c.Conn.SetReadDeadline(c.idleDeadline()); err == nil {
			err = err2
		}
	}
	return n, err
}

// idleDeadline is the next read's deadline once the first byte came: the
// idle timeout from now, within the exchange's own deadline.
func (c *firstByteConn) idleDeadline() time.Time {
	if c.idle <= 0 {
		return c.deadline
	}
	d := time.Now().Add(c.idle)
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		return c.deadline
	}
	return d
}

// retryAfter is the number of seconds until the open breaker lets a probe
// through, at least 1.
func (t *Teacher) retryAfter() int {
	left := t.cfg.Breaker.OpenTimeout - time.Since(time.Unix(0, t.openedAt.Load()))
	return max(1, int((left+time.Second-1)/time.Second))
}

// Do sends req and fills resp (its body left as a stream when
// resp.StreamBody is set). On success the returned done must be called with
// the outcome of consuming the response, which the breaker counts.
//
// Requests that never reached the teacher are sent again, within
// teacher.retries and teacher.retry_window, waiting on ctx:
//   - a failed connect, after a backoff;
//   - a connection the teacher closed before sending a response byte: a
//     kept-alive connection it had timed out (uvicorn after 5s idle), or
//     all of them after a restart. Every idle connection is then dropped,
//     as they are likely stale too, and the first such retry goes out at
//     once on a new connection. Only if every attempt fails does the
//     breaker count a failure.
//
// A request the teacher began to answer is never sent again, nor one whose
// body streams from the client (req.BodyStream) once it was written: the
// stream cannot be read twice, so only a failed connect is retried. When
// such a body failed on the client's side (it hung up, or stalled past
// its read timeout) the exchange is not the teacher's failure: the breaker
// does not count it, and Do returns the client's error.
func (t *Teacher) Do(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response) (done func(error), err error) {
	done, err = t.breaker.Allow()
	if err != nil {
		t.metrics.teacherErrors.WithLabelValues("breaker_open").Inc()
		return nil, ErrTeacherUnavailable
	}
	start := time.Now()
	req.SetTimeout(t.cfg.Timeout)
	upload, _ := req.BodyStream().(interface{ clientFailed() error })
	stale := 0
	for attempt := 0; ; attempt++ {
		err = t.hc.Do(req, resp)
		if upload != nil && err != nil {
			if cerr := upload.clientFailed(); cerr != nil {
				done(errClientGone)
				return nil, cerr
			}
		}
		reason := retryReason(err)
		if reason == "" || attempt >= t.cfg.Retries || upload != nil && reason != "connect" {
			break
		}
		var wait time.Duration
		if reason == "stale_connection" {
			t.hc.CloseIdleConnections()
			stale++
		}
		if reason != "stale_connection" || stale > 1 {
			// Exponential backoff with jitter, within the retry window.
			wait = time.Duration(float64(50*time.Millisecond<<attempt) * (0.5 + rand.Float64()))
		}
		if time.Since(start)+wait > t.cfg.RetryWindow {
			break
		}
		t.metrics.teacherRetries.WithLabelValues(reason).Inc()
		if wait == 0 {
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			done(errClientGone)
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	if errors.Is(err, fasthttp.ErrNoFreeConns) {
		t.metrics.teacherErrors.WithLabelValues("busy").Inc()
		done(errTeacherBusy)
		return nil, errTeacherBusy
	}
	if err != nil {
		t.metrics.teacherErrors.WithLabelValues(errorReason(err)).Inc()
		done(err)
		return nil, err
	}
	if resp.StatusCode() >= 500 {
		// Counted as a failure now; the body is still relayed.
		done(errTeacherStatus)
		return func(error) {}, nil
	}
	return done, nil
}

// retryReason says why a failed attempt may be sent again ("connect",
// "stale_connection"), or "" when it may not. fasthttp reports a connection
// closed or reset before the first response byte as ErrConnectionClosed; a
// write to a connection the teacher had already closed fails (EPIPE,
// ECONNRESET). Either way the teacher answered nothing. An error after the
// first response byte is neither, and is not retried.
func retryReason(err error) string {
	var de *dialError
	var oe *net.OpError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &de):
		return "connect"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.As(err, &oe) && oe.Op == "write":
		return "stale_connection"
	}
	return ""
}

// errorReason classifies a transport error for metrics and status codes.
func errorReason(err error) string {
	var de *dialError
	switch {
	case errors.Is(err, ErrTeacherUnavailable):
		return "breaker_open"
	case errors.Is(err, errTeacherBusy):
		return "busy"
	case errors.As(err, &de):
		return "connect"
	case errors.Is(err, fasthttp.ErrTimeout), isTimeout(err):
		return "timeout"
	default:
		return "transport"
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// transportError turns a failed exchange into the client's error.
func (t *Teacher) transportError(err error) *apiError {
	switch {
	case errors.Is(err, ErrTeacherUnavailable):
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Code: "teacher_unavailable",
			Message: "The teacher model is unavailable (circuit breaker open). Please retry later.", RetryAfter: t.retryAfter()}
	case errors.Is(err, errTeacherBusy):
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Code: "teacher_busy",
			Message: fmt.Sprintf("All %d connections to the teacher model are busy. Please retry shortly.", t.cfg.MaxConns), RetryAfter: 1}
	case errorReason(err) == "timeout":
		return &apiError{Status: fasthttp.StatusGatewayTimeout, Type: "server_error", Code: "teacher_timeout",
			Message: "The teacher model did not answer in time."}
	default:
		return &apiError{Status: fasthttp.StatusBadGateway, Type: "server_error", Code: "teacher_error",
			Message: "The gateway could not reach the teacher model."}
	}
}

// statusError is what the client gets of a teacher's server error that no
// student answered in place of: its status, the gateway's error object.
func (t *Teacher) statusError(status int) *apiError {
	return &apiError{Status: status, Type: "server_error", Code: "teacher_error",
		Message: fmt.Sprintf("The teacher model answered with a server error (HTTP %d).", status)}
}

// State returns the breaker's state.
func (t *Teacher) State() gobreaker.State { return t.breaker.State() }

// Close closes idle connections to the teacher.
func (t *Teacher) Close() { t.hc.CloseIdleConnections() }
