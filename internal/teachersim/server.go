package teachersim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// shutdownGrace is how long Serve lets in-flight requests finish once its
// context is done before it closes their connections.
const shutdownGrace = 5 * time.Second

// Server is a teacher simulator. Its handler is safe for concurrent use.
type Server struct {
	cfg     Config // defaults applied; read-only after New
	ix      index
	log     *slog.Logger
	handler fasthttp.RequestHandler
	created int64 // unix time of New, the models' "created"

	modelList []byte            // GET /v1/models body
	models    map[string][]byte // GET /v1/models/{id} bodies
	authz     []byte            // "Bearer <APIKey>", nil without a key

	stored *responseStore // responses kept for GET /v1/responses/{id}

	settings   atomic.Pointer[settings]
	settingsMu sync.Mutex // serialises /sim/config updates

	seq      atomic.Uint64 // request ids
	requests atomic.Int64
	errors   atomic.Int64

	rngs    sync.Pool     // *rand.Rand
	rngSeq  atomic.Uint64 // stream id of the next pooled *rand.Rand
	scratch sync.Pool     // *scratch

	streams   sync.WaitGroup // running stream writers
	closing   chan struct{}  // closed when Serve starts shutting down
	closeOnce sync.Once
	served    atomic.Bool
}

// Stats counts the API requests a Server has answered (every path outside
// /sim/) and how many of those it answered with an error status (4xx or
// 5xx), injected errors included.
type Stats struct {
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
}

// New validates cfg, applies its defaults and builds a Server.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("configuring teachersim: %w", err)
	}
	ix, err := newIndex(cfg.Tasks)
	if err != nil {
		return nil, fmt.Errorf("configuring teachersim: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		ix:      ix,
		log:     cfg.Logger,
		created: time.Now().Unix(),
		closing: make(chan struct{}),
		stored:  newResponseStore(maxStoredResponses),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.APIKey != "" {
		s.authz = []byte("Bearer " + cfg.APIKey)
	}
	s.settings.Store(cfg.settings())
	s.rngs.New = func() any {
		return rand.New(rand.NewPCG(cfg.Seed, s.rngSeq.Add(1)))
	}
	s.scratch.New = func() any { return new(scratch) }
	s.buildModels()
	s.handler = s.handle
	return s, nil
}

// Handler returns the server's request handler, for callers that run their
// own fasthttp.Server; Serve uses the same handler.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Errors: s.errors.Load()}
}

// Serve serves HTTP on ln until ctx is done, then shuts down gracefully:
// it closes ln and idle connections, cuts short latency and chunk delays,
// lets in-flight requests finish (closing their connections after
// shutdownGrace at the latest), waits for every goroutine it started and
// returns nil. It returns an error if ln fails first. Serve closes ln and may
// be called once per Server.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		_ = ln.Close()
		return errors.New("serving teachersim: Serve called twice")
	}
	conns := newConnTracker()
	fs := &fasthttp.Server{
		Handler:      s.handler,
		ErrorHandler: s.readError,
		Name:         "teacher-sim",
		// The Date header needs fasthttp's process-wide refresher
		// goroutine, which would outlive Serve.
		NoDefaultDate:      true,
		ReadBufferSize:     16 << 10,
		MaxRequestBodySize: 64 << 20,
		ConnState:          conns.setState,
		Logger:             fasthttpLogger{s.log},
	}

	// Serve runs its own accept loop over fasthttp's ServeConn rather than
	// fasthttp.Server.Serve: the latter's worker pool leaves a cleaner
	// goroutine running for up to MaxIdleWorkerDuration after Shutdown,
	// and Serve must not return before its goroutines have.
	var wg sync.WaitGroup // one per connection
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- s.accept(ln, fs, conns, &wg) }()

	var err error
	select {
	case <-ctx.Done():
		s.shutdown()
		_ = ln.Close()
		err = <-acceptErr
	case err = <-acceptErr:
		s.shutdown()
		_ = ln.Close()
	}

	// The accept loop has returned, so wg counts every connection.
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	conns.closeIdle()
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		conns.closeAll()
		<-done
	}
	// No handler runs any more; a stream writer whose client went away
	// may still be finishing its (now cut short) chunk delay.
	s.streams.Wait()
	return err
}

// shutdown tells handlers and stream writers to stop waiting.
func (s *Server) shutdown() {
	s.closeOnce.Do(func() { close(s.closing) })
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// accept accepts connections on ln and serves each in a goroutine counted by
// wg, until ln is closed. It returns nil when Serve closed ln.
func (s *Server) accept(ln net.Listener, fs *fasthttp.Server, conns *connTracker, wg *sync.WaitGroup) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				return nil
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of file descriptors and the like: back off as
				// net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("teachersim: accepting connection", "err", err, "retry_in", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.closing:
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		backoff = 0
		if !conns.add(c) {
			_ = c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conns.remove(c)
			if err := fs.ServeConn(c); err != nil {
				s.log.Debug("teachersim: serving connection", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// connTracker knows the state of every open connection, so that shutdown
// can close the idle ones at once and the rest as they go idle.
type connTracker struct {
	mu      sync.Mutex
	conns   map[net.Conn]fasthttp.ConnState
	closing bool
}

func newConnTracker() *connTracker {
	return &connTracker{conns: make(map[net.Conn]fasthttp.ConnState)}
}

// add starts tracking c; it reports false once shutdown has begun.
func (t *connTracker) add(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.conns[c] = fasthttp.StateNew
	return true
}

func (t *connTracker) remove(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// setState is the fasthttp.Server.ConnState hook.
func (t *connTracker) setState(c net.Conn, st fasthttp.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.conns[c]; !ok {
		return
	}
	switch st {
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(t.conns, c)
	case fasthttp.StateIdle:
		t.conns[c] = st
		if t.closing {
			_ = c.Close()
		}
	default:
		t.conns[c] = st
	}
}

// closeIdle begins shutdown: it closes connections that are between
// requests or have not sent one yet, and from now on those that go idle.
// Connections in a request finish it; handlers answer them with
// "Connection: close".
func (t *connTracker) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	for c, st := range t.conns {
		if st == fasthttp.StateNew || st == fasthttp.StateIdle {
			_ = c.Close()
		}
	}
}

// closeAll closes every connection still open.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	for c := range t.conns {
		_ = c.Close()
	}
}

// fasthttpLogger sends fasthttp's log lines to the server's logger at debug
// level.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug("teachersim: fasthttp: " + fmt.Sprintf(format, args...))
	}
}
