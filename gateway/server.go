package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/student"
)

// Deps are a Server's collaborators: what does not come from config.
type Deps struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registry receives the gateway's metrics and is served on /metrics.
	// Default: a new registry.
	Registry *prometheus.Registry
	// Pairs receives the eligible teacher answers. Default: none are kept.
	Pairs PairLog
	// Router decides who answers eligible requests. Default: the teacher.
	Router Router
	// Responses keeps the Responses API answers students make, to read
	// back and continue. Default: none are kept (previous_response_id
	// and GET of a student's response go to the teacher, which does not
	// know them).
	Responses storage.Responses
	// MetricDomains bounds the domain label of metrics; share the router's.
	// Default: metrics.max_domains domains.
	MetricDomains *router.MetricDomains
	// Known lists the domains that exist at start, which pass the bound on
	// new automatic domains (gateway.max_auto_domains); pass the pair log.
	// Default: none, so only those admitted since start pass.
	Known KnownDomains
}

// Server is the OpenAI-compatible API server.
type Server struct {
	cfg           *config.Config
	log           *slog.Logger
	failures      *failureLog // teacher failures, at most one line a second per reason
	invalids      *failureLog // student answers not sent (answerFits), likewise
	schemas       *schemaCache
	m             *metrics
	costs         *costs
	metricDomains *router.MetricDomains
	teacher       *Teacher
	domains       *DomainResolver
	pairs         PairLog
	kept          storage.Responses
	router        Router
	// normalizer turns answers into labels.
	normalizer student.Normalizer
	keys       [][sha256.Size]byte // sha256 of each gateway key
	metrics    fasthttp.RequestHandler
	srv        *fasthttp.Server
	reg        *prometheus.Registry
	maxConns   int       // client connections open at once
	sessions   *sessions // WebSocket sessions relayed to the teacher

	ready atomic.Bool
	// hurry is closed by Hurry: it ends gateway.shutdown_delay early.
	hurry     chan struct{}
	hurryOnce sync.Once
	// stop is cancelled when the server stops accepting, ending waits
	// between retries.
	stop       context.Context
	cancelStop context.CancelFunc
}

// New builds a Server from validated config.
func New(cfg *config.Config, deps Deps) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: deps.Logger, pairs: deps.Pairs, kept: deps.Responses, router: deps.Router, reg: deps.Registry,
		normalizer: student.Normalizer{FoldCase: cfg.Labels.FoldCase, StripTrailingPeriod: cfg.Labels.StripTrailingPeriod}}
	s.m = newMetrics(deps.Registry, s.log)
	s.failures = newFailureLog(s.log)
	s.invalids = newFailureLog(s.log)
	s.schemas = newSchemaCache(schemaCacheEntries, schemaCacheBytes)
	if deps.MetricDomains == nil {
		deps.MetricDomains = router.NewMetricDomains(cfg.Metrics.MaxDomains)
	}
	s.metricDomains = deps.MetricDomains
	s.costs = newCosts(deps.Registry, cfg.Pricing, s.metricDomains)
	var err error
	if s.teacher, err = newTeacher(cfg.Teacher, s.m); err != nil {
		return nil, err
	}
	if s.domains, err = NewDomainResolver(cfg.Domains); err != nil {
		return nil, err
	}
	s.domains.admit = newAdmission(cfg.Gateway.MaxAutoDomains, cfg.Gateway.NewDomainsPerMinute, deps.Known,
		func(reason string) { s.m.domainsRefused.WithLabelValues(reason).Inc() }, s.log)
	for _, k := range cfg.Gateway.APIKeys {
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	s.sessions = newSessions()
	deps.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "understudy", Subsystem: "gateway", Name: "websocket_sessions",
		Help: "WebSocket sessions (the Realtime API) relayed to the teacher open now.",
	}, func() float64 { return float64(s.sessions.count()) }))
	s.metrics = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(deps.Registry, promhttp.HandlerOpts{}))
	s.hurry = make(chan struct{})
	s.stop, s.cancelStop = context.WithCancel(context.Background())
	s.srv = &fasthttp.Server{
		Handler:               chain(serveErrors(s.log, s.dispatch), s.recover, s.requestID, s.observe, s.auth),
		ErrorHandler:          s.transportError,
		Name:                  "understudy",
		NoDefaultServerHeader: true,
		// The handler gets every body as a stream (fasthttp reads at most
		// 8 KiB of it first): a relayed body streams on to the teacher
		// without a size limit (relay.go), and readBody reads the body of
		// a request the gateway interprets whole, within
		// gateway.max_body_size. MaxRequestBodySize then only bounds that
		// first read.
		StreamRequestBody:  true,
		MaxRequestBodySize: int(2 * cfg.Gateway.MaxBodySize),
		// ReadTimeout runs from a connection's opening, or a kept-alive
		// one's next first byte, to the end of the headers; HeaderReceived
		// then gives the body its own time: read_timeout, or teacher.timeout
		// for a relayed body (an upload), which the teacher exchange it is
		// part of bounds anyway. A client that trickles its headers
		// (slowloris) is cut off after read_header_timeout.
		ReadTimeout: cfg.Gateway.ReadHeaderTimeout,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if relayedHeader(h) {
				return fasthttp.RequestConfig{ReadTimeout: max(cfg.Gateway.ReadTimeout, cfg.Teacher.Timeout)}
			}
			return fasthttp.RequestConfig{ReadTimeout: cfg.Gateway.ReadTimeout}
		},
		IdleTimeout: cfg.Gateway.IdleTimeout,
		// Each write of a streamed answer extends it (writeDeadline).
		WriteTimeout:                  cfg.Gateway.WriteTimeout,
		ReadBufferSize:                maxHeaderBytes,
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		Logger:                        slogPrinter{s.log},
		SecureErrorLogMessage:         true,
		DisableHeaderNamesNormalizing: false,
	}
	s.maxConns = connCap(cfg, s.log)
	return s, nil
}

// maxHeaderBytes bounds a request's line and headers, as nginx's default
// does (fasthttp's own is 4 KiB, which a large bearer token or a proxy's
// cookies can pass); larger ones get 431. Each connection being read holds
// a buffer this size.
const maxHeaderBytes = 8 << 10

// connCap is gateway.max_conns, or when it is 0 the open-file limit less
// what the process needs besides client connections: the teacher's
// connections and 1024 for the pair log, ONNX Runtime and the admin
// listener; at least 64, at most 65536.
func connCap(cfg *config.Config, log *slog.Logger) int {
	limit := openFileLimit()
	reserve := uint64(cfg.Teacher.MaxConns) + 1024
	if n := cfg.Gateway.MaxConns; n > 0 {
		if limit > 0 && uint64(n)+reserve > limit {
			log.Warn("gateway.max_conns leaves too few file descriptors: clients may exhaust them",
				"max_conns", n, "open_file_limit", limit, "reserved", reserve)
		}
		return n
	}
	n := uint64(65536)
	if limit > 0 {
		n = min(n, max(64, limit-min(limit, reserve)))
	}
	return int(n)
}

// Run listens on the configured address and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then stops in three steps:
// /readyz answers 503 at once; the server goes on accepting and serving for
// gateway.shutdown_delay (or until Hurry), so that a load balancer sees it
// leave before its port closes; then it stops accepting, waits up to
// gateway.shutdown_timeout for the requests in flight, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if len(s.keys) == 0 && !loopback(ln.Addr()) {
		s.log.Warn("gateway listening on a non-loopback address without gateway.api_keys: anyone who reaches it spends the teacher's key",
			"addr", ln.Addr().String())
	}
	s.log.Info("gateway listening", "addr", ln.Addr().String(), "teacher", s.teacher.base, "max_conns", s.maxConns)
	lln := newLimitListener(ln, s.maxConns, s.log, s.reg)
	defer lln.Close()
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(lln) }()
	s.ready.Store(true)
	select {
	case err := <-errc:
		s.ready.Store(false)
		s.cancelStop()
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	s.ready.Store(false)
	if err := s.linger(errc); err != nil {
		s.cancelStop()
		return fmt.Errorf("serving: %w", err)
	}
	s.cancelStop()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.Gateway.ShutdownTimeout)
	defer cancel()
	err := s.srv.ShutdownWithContext(sctx)
	<-errc
	s.sessions.close(sctx)
	s.teacher.Close()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// linger serves on, not ready, for gateway.shutdown_delay or until Hurry.
// It returns the error of a server that failed meanwhile.
func (s *Server) linger(errc <-chan error) error {
	d := s.cfg.Gateway.ShutdownDelay
	if d <= 0 {
		return nil
	}
	s.log.Info("gateway stopping: /readyz answers 503; serving on for gateway.shutdown_delay (a second signal skips it)", "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.hurry:
		s.log.Info("gateway stopping: shutdown delay cut short")
		return nil
	case err := <-errc:
		return err
	}
}

// Hurry cuts gateway.shutdown_delay short: a stopping server stops accepting
// now, and one that has not begun stopping will not wait when it does. It
// is safe to call more than once and from any goroutine.
func (s *Server) Hurry() {
	s.hurryOnce.Do(func() { close(s.hurry) })
}

// loopback reports whether addr is a loopback TCP address.
func loopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// dispatch hands a request to the handler of its path, which checks its
// method. A /v1 request the gateway does not interpret (relayed) goes to
// the teacher unread; the others' bodies are read whole first.
func (s *Server) dispatch(ctx *fasthttp.RequestCtx) error {
	path := string(ctx.Path())
	info := infoOf(ctx)
	if relayed(ctx.Method(), ctx.Path()) {
		return s.relayToTeacher(ctx)
	}
	if err := s.readBody(ctx); err != nil {
		info.endpoint = "unknown"
		return err
	}
	switch path {
	case "/v1/chat/completions":
		info.endpoint = "chat_completions"
		return s.chatCompletions(ctx)
	case "/v1/completions":
		info.endpoint = "completions"
		return s.completions(ctx)
	case "/v1/responses":
		info.endpoint = "responses"
		return s.responses(ctx)
	case "/healthz":
		return only(ctx, getOrHead, healthz)
	case "/readyz":
		return only(ctx, getOrHead, s.readyz)
	case "/metrics":
		return only(ctx, get, func(ctx *fasthttp.RequestCtx) error { s.metrics(ctx); return nil })
	}
	if strings.HasPrefix(path, "/v1/responses/") && len(path) > len("/v1/responses/") {
		info.endpoint = "responses"
		return s.responseByID(ctx)
	}
	if strings.HasPrefix(path, "/v1/") {
		return s.relayToTeacher(ctx) // no handler of its own here
	}
	return notFound(ctx)
}

// The methods a path allows.
var (
	post      = []string{fasthttp.MethodPost}
	get       = []string{fasthttp.MethodGet}
	getOrHead = []string{fasthttp.MethodGet, fasthttp.MethodHead}
)

// only runs h when the request uses one of the allowed methods, and is a
// 405 otherwise.
func only(ctx *fasthttp.RequestCtx, allowed []string, h handler) error {
	m := string(ctx.Method())
	for _, a := range allowed {
		if m == a {
			return h(ctx)
		}
	}
	return &apiError{Status: fasthttp.StatusMethodNotAllowed, Type: "invalid_request_error", Allow: strings.Join(allowed, ", "),
		Message: fmt.Sprintf("Method %s is not allowed on %s; use %s.", m, ctx.Path(), strings.Join(allowed, " or "))}
}

// notFound is the 404 of a path no handler serves.
func notFound(ctx *fasthttp.RequestCtx) error {
	return &apiError{Status: fasthttp.StatusNotFound, Type: "invalid_request_error",
		Message: fmt.Sprintf("Invalid URL (%s %s)", ctx.Method(), ctx.Path())}
}

func healthz(ctx *fasthttp.RequestCtx) error {
	ctx.SetContentType("application/json")
	ctx.SetBodyString(`{"status":"ok"}`)
	return nil
}

// readyz answers 200 while the server wants traffic and 503 from the
// moment it begins stopping: during gateway.shutdown_delay it still serves
// every request, /readyz included, so a load balancer's health check sees
// the 503 before the port closes.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) error {
	ctx.SetContentType("application/json")
	state := s.teacher.State().String()
	if !s.ready.Load() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"status":"stopping","teacher_breaker":"` + state + `"}`)
		return nil
	}
	ctx.SetBodyString(`{"status":"ready","teacher_breaker":"` + state + `"}`)
	return nil
}

// transportError answers requests fasthttp rejected before any handler
// ran: headers over maxHeaderBytes (431), a client too slow to send them
// (408), a malformed request (400). fasthttp closes the connection then,
// with the rest of the request unread: it lingers, so the client reads the
// answer instead of a reset.
func (s *Server) transportError(ctx *fasthttp.RequestCtx, err error) {
	ctx.Response.Header.Set("X-Request-Id", newRequestID())
	ctx.Response.Header.Set("X-Understudy-Route", "none")
	lingerOnClose(ctx)
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		writeError(ctx, &apiError{Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Type: "invalid_request_error",
			Message: fmt.Sprintf("Request header fields too large: the request line and headers may take %d KiB.", maxHeaderBytes>>10)})
		s.m.requests.WithLabelValues("unknown", router.NoDomain, "none", "431").Inc()
		return
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		writeError(ctx, &apiError{Status: fasthttp.StatusRequestTimeout, Type: "invalid_request_error", Message: "Timed out reading the request."})
		return
	}
	writeError(ctx, &apiError{Status: fasthttp.StatusBadRequest, Type: "invalid_request_error", Message: "Malformed HTTP request."})
}

// slogPrinter adapts slog to fasthttp's Logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, args ...any) {
	p.log.Debug("fasthttp", "msg", fmt.Sprintf(format, args...))
}

// tooLarge is the 413 for a body over gateway.max_body_size.
func (s *Server) tooLarge() *apiError {
	return &apiError{Status: fasthttp.StatusRequestEntityTooLarge, Type: "invalid_request_error",
		Code: "request_too_large", Message: fmt.Sprintf("Request body too large: the limit is %s.", s.cfg.Gateway.MaxBodySize)}
}
