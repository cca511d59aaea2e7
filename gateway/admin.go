package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/openai"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
)

// AdminStore is what the admin API reads from storage.
type AdminStore interface {
	DomainsPage(after string, limit int) (storage.DomainPage, error)
	Domain(name string) (storage.Domain, error)
	Pairs(ctx context.Context, domain string, fn func(storage.Pair) error) error
	StudentVersions(domain string) ([]storage.StudentVersion, error)
}

// AdminRouter is what the admin API asks of the router.
type AdminRouter interface {
	View(domain string) (router.View, bool)
	Act(domain, action string) (router.Record, error)
}

var _ AdminRouter = (*router.Router)(nil)

// CostSource reports a domain's teacher spend and student savings.
type CostSource interface {
	Costs(domain string) (spent, saved float64)
}

var _ CostSource = (*Server)(nil)

// Trainer is what the admin API asks of the background trainer.
type Trainer interface {
	// Trigger queues a training run of a domain now.
	Trigger(domain string) error
}

var _ AdminStore = (*storage.DB)(nil)

// Admin is the admin API server, on its own listener:
//
//	GET /admin/domains[?limit=N&after=NAME]  a page of domains, by name, with
//	                                   their pair and label counts (DomainsPage)
//	GET /admin/domains/{name}          one domain in more detail, with its
//	                                   agreement per field for JSON records
//	GET /admin/domains/{name}/export   its pairs as OpenAI fine-tuning JSONL
//	POST /admin/domains/{name}/train   train a student version now
//	POST /admin/domains/{name}/{promote|demote|pin-teacher|pin-student|unpin}
//	GET /admin/replicas                the live replicas sharing the store
//	GET /admin/status                  counts summed over the live replicas
//	GET /healthz, GET /debug/pprof/... for operators
//
// Every path needs "Authorization: Bearer <admin.token>" when a token is
// configured (config requires one unless the listener is loopback-only).
type Admin struct {
	cfg     *config.Config
	store   AdminStore
	trainer Trainer
	router  AdminRouter
	costs   CostSource
	cluster *Cluster
	log     *slog.Logger
	token   [sha256.Size]byte
	srv     *fasthttp.Server
	pprof   fasthttp.RequestHandler
	// stop ends exports in progress when the server shuts down.
	stop       context.Context
	cancelStop context.CancelFunc
}

// AdminDeps are the admin API's collaborators.
type AdminDeps struct {
	Store AdminStore
	// Trainer and Router are nil when training is disabled: a domain is
	// then collecting, and training and routing actions answer 503.
	Trainer Trainer
	Router  AdminRouter
	// Costs reports spend and savings; nil reports none.
	Costs CostSource
	// Cluster sums the route counts, offload and dollars of every live
	// replica into the domain views and serves /admin/replicas and
	// /admin/status; nil: this replica's own numbers, and those two
	// answer 503.
	Cluster *Cluster
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewAdmin builds the admin API server from validated config.
func NewAdmin(cfg *config.Config, deps AdminDeps) *Admin {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &Admin{cfg: cfg, store: deps.Store, trainer: deps.Trainer, router: deps.Router, costs: deps.Costs, cluster: deps.Cluster, log: log, pprof: fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)}
	a.token = sha256.Sum256([]byte(cfg.Admin.Token))
	a.stop, a.cancelStop = context.WithCancel(context.Background())
	a.srv = &fasthttp.Server{
		Handler:               chain(serveErrors(log, a.dispatch), recoverWith(log), a.auth),
		Name:                  "understudy-admin",
		NoDefaultServerHeader: true,
		ReadTimeout:           time.Minute,
		IdleTimeout:           2 * time.Minute,
		CloseOnShutdown:       true,
		Logger:                slogPrinter{log},
		// fasthttp otherwise quotes a malformed request, headers and all,
		// in the error it logs: Authorization and the admin token with it.
		SecureErrorLogMessage: true,
	}
	return a
}

// Run listens on admin.listen and serves until ctx is done.
func (a *Admin) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s (admin.listen): %w", a.cfg.Admin.Listen, err)
	}
	return a.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done.
func (a *Admin) Serve(ctx context.Context, ln net.Listener) error {
	a.log.Info("admin API listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(ln) }()
	select {
	case err := <-errc:
		a.cancelStop()
		return fmt.Errorf("serving admin API: %w", err)
	case <-ctx.Done():
	}
	a.cancelStop()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := a.srv.ShutdownWithContext(sctx)
	<-errc
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutting down admin API: %w", err)
	}
	return nil
}

func (a *Admin) auth(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if a.cfg.Admin.Token != "" {
			key, ok := bearer(ctx.Request.Header.Peek("Authorization"))
			sum := sha256.Sum256(key)
			if !ok || subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 {
				writeError(ctx, &apiError{Status: fasthttp.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_admin_token",
					Message: "The admin API needs 'Authorization: Bearer <admin.token>'."})
				return
			}
		}
		next(ctx)
	}
}

// dispatch hands a request to the handler of its path.
func (a *Admin) dispatch(ctx *fasthttp.RequestCtx) error {
	path := string(ctx.Path())
	switch {
	case path == "/healthz":
		return healthz(ctx)
	case strings.HasPrefix(path, "/debug/pprof/"):
		a.pprofHandler(ctx, strings.TrimPrefix(path, "/debug/pprof/"))
		return nil
	case path == "/admin/domains":
		return only(ctx, get, a.domains)
	case path == "/admin/replicas":
		return only(ctx, get, func(ctx *fasthttp.RequestCtx) error {
			if a.cluster == nil {
				return errNoReplicas
			}
			return writeJSON(ctx, a.cluster.replicas(ctx))
		})
	case path == "/admin/status":
		return only(ctx, get, func(ctx *fasthttp.RequestCtx) error {
			if a.cluster == nil {
				return errNoReplicas
			}
			return writeJSON(ctx, a.cluster.status(ctx))
		})
	case strings.HasPrefix(path, "/admin/domains/"):
		name, rest, _ := strings.Cut(strings.TrimPrefix(path, "/admin/domains/"), "/")
		switch rest {
		case "":
			return only(ctx, get, func(ctx *fasthttp.RequestCtx) error { return a.domain(ctx, name) })
		case "export":
			return only(ctx, get, func(ctx *fasthttp.RequestCtx) error { return a.export(ctx, name) })
		case "train":
			return only(ctx, post, func(ctx *fasthttp.RequestCtx) error { return a.train(ctx, name) })
		case "promote", "demote", "pin-teacher", "pin-student", "unpin":
			return only(ctx, post, func(ctx *fasthttp.RequestCtx) error { return a.act(ctx, name, rest) })
		}
	}
	return notFound(ctx)
}

func (a *Admin) pprofHandler(ctx *fasthttp.RequestCtx, name string) {
	switch name {
	case "cmdline":
		fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Cmdline)(ctx)
	case "profile":
		fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Profile)(ctx)
	case "symbol":
		fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Symbol)(ctx)
	case "trace":
		fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Trace)(ctx)
	default:
		a.pprof(ctx)
	}
}

// DomainView is a domain as the admin API shows it.
type DomainView struct {
	Name      string            `json:"name"`
	State     string            `json:"state"`
	Pairs     int64             `json:"pairs"`
	Labels    int               `json:"labels"`
	TopLabels []LabelCount      `json:"top_labels"`
	FirstSeen time.Time         `json:"first_seen"`
	LastSeen  time.Time         `json:"last_seen"`
	Settings  map[string]string `json:"settings,omitempty"`
	// OpenEndedReason says why no student serves an open_ended domain.
	OpenEndedReason string `json:"open_ended_reason,omitempty"`
	// Versions are the trained student versions, oldest first, with their
	// holdout metrics (detail view only).
	Versions []json.RawMessage `json:"versions,omitempty"`
	// LatestVersion is the newest trained version, 0 when none.
	LatestVersion int `json:"latest_version"`
	// Routing is the routing state: serving and shadow versions, agreement
	// with its bounds, coverage, samples, offload share, transitions.
	Routing *router.View `json:"routing,omitempty"`
	// Fields, for a domain answered with JSON records (detail view
	// only), are the agreement and coverage per field of the version
	// FieldsVersion: the serving one, else the leading candidate.
	Fields        []shadow.FieldStats `json:"fields,omitempty"`
	FieldsVersion int                 `json:"fields_version,omitempty"`
	// SpentDollars and SavedDollars are the teacher's cost and the
	// student's estimated savings since the server started.
	SpentDollars float64 `json:"spent_dollars"`
	SavedDollars float64 `json:"saved_dollars"`
	// Replicas is how many live replicas the route counts (routing.routes),
	// offload (routing.offload) and dollars sum: what each live replica
	// answered since it started (among replicas a router does not carry
	// route counts over from the stored records; recent_offload stays
	// this replica's). ThisReplica, when the sum covers others, is this
	// replica's own share. Absent where replicas are not listed. A replica
	// that pools the domain with others past its metrics.max_domains adds
	// nothing here (see Cluster).
	Replicas    int        `json:"replicas,omitempty"`
	ThisReplica *OwnCounts `json:"this_replica,omitempty"`
}

// OwnCounts are one replica's route counts, offload and dollars of a
// domain, as a single gateway's view shows them.
type OwnCounts struct {
	Routes       map[router.Route]int64 `json:"routes"`
	Offload      float64                `json:"offload"`
	SpentDollars float64                `json:"spent_dollars"`
	SavedDollars float64                `json:"saved_dollars"`
}

// errNoReplicas answers the replica views of a server built without a
// Cluster.
var errNoReplicas = &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Code: "replicas_unavailable",
	Message: "This server does not list replicas."}

// withoutFields drops the per-field counts from a view's statistics: a
// page of domains lists the whole-record numbers only.
func withoutFields(rv *router.View) {
	for _, st := range []*shadow.Stats{rv.ServingStats, rv.CandidateStats} {
		if st != nil {
			st.Fields = nil
		}
	}
	for i := range rv.Candidates {
		rv.Candidates[i].Stats.Fields = nil
	}
}

// LabelCount is one label and how many stored pairs carry it.
type LabelCount struct {
	Label string `json:"label"`
	Count int64  `json:"count"`
}

// sums returns the other live replicas' counts for the domain views of
// one request; the zero domainSums without a Cluster.
func (a *Admin) sums(ctx context.Context) domainSums {
	if a.cluster == nil {
		return domainSums{}
	}
	return a.cluster.sums(ctx)
}

// addReplicas makes v's route counts, offload and dollars the sums over the
// live replicas, keeping this replica's under ThisReplica when others add
// to them.
func addReplicas(v *DomainView, sums domainSums) {
	if sums.replicas == 0 {
		return
	}
	v.Replicas = sums.replicas
	other, ok := sums.of(v.Name)
	if !ok || sums.replicas < 2 {
		return
	}
	own := &OwnCounts{Routes: map[router.Route]int64{}, SpentDollars: v.SpentDollars, SavedDollars: v.SavedDollars}
	if v.Routing == nil {
		// Only other replicas answered it since this one started.
		v.Routing = &router.View{State: router.State(v.State), Routes: map[router.Route]int64{}}
	}
	maps.Copy(own.Routes, v.Routing.Routes)
	own.Offload = v.Routing.Offload
	v.ThisReplica = own
	sum := map[string]int64{}
	for r, n := range own.Routes {
		sum[string(r)] = n
	}
	for r, n := range other.Routes {
		sum[r] += n
	}
	v.Routing.Routes = make(map[router.Route]int64, len(sum))
	for r, n := range sum {
		v.Routing.Routes[router.Route(r)] = n
	}
	v.Routing.Offload = offload(sum)
	v.SpentDollars += other.SpentDollars
	v.SavedDollars += other.SavedDollars
}

func (a *Admin) viewOf(d storage.Domain, topN int, detail bool) (DomainView, error) {
	v := DomainView{Name: d.Name, State: string(router.Collecting), Pairs: d.Pairs, Labels: len(d.Labels),
		FirstSeen: d.FirstSeen, LastSeen: d.LastSeen, TopLabels: []LabelCount{}}
	versions, err := a.store.StudentVersions(d.Name)
	if err != nil {
		return v, err
	}
	if n := len(versions); n > 0 {
		v.LatestVersion = versions[n-1].Version
	}
	if a.costs != nil {
		v.SpentDollars, v.SavedDollars = a.costs.Costs(d.Name)
	}
	if a.router != nil {
		if rv, ok := a.router.View(d.Name); ok {
			v.State = string(rv.State)
			if rv.Reason != "" && rv.State == router.OpenEnded {
				v.OpenEndedReason = rv.Reason
			}
			if detail {
				switch {
				case rv.ServingStats != nil:
					v.Fields, v.FieldsVersion = rv.ServingStats.Fields, rv.Serving
				case rv.CandidateStats != nil:
					v.Fields, v.FieldsVersion = rv.CandidateStats.Fields, rv.Candidate
				}
			} else {
				if n := len(rv.Transitions); n > 3 {
					rv.Transitions = rv.Transitions[n-3:]
				}
				withoutFields(&rv)
			}
			v.Routing = &rv
		}
	}
	if detail {
		v.Settings = d.Settings
		for _, sv := range versions {
			v.Versions = append(v.Versions, json.RawMessage(sv.Meta))
		}
	}
	for _, lc := range d.TopLabels(topN) {
		v.TopLabels = append(v.TopLabels, LabelCount{Label: lc.Label, Count: lc.Count})
	}
	return v, nil
}

// The page sizes of GET /admin/domains: limit's default and its largest.
const (
	DefaultDomainsPage = 100
	MaxDomainsPage     = 1000
)

// DomainsPage is the body of GET /admin/domains: up to limit domains
// (default DefaultDomainsPage, at most MaxDomainsPage) sorted by name,
// after the name given as after; Next is the after of the next page, null
// on the last; Total counts every domain.
type DomainsPage struct {
	Domains []DomainView `json:"domains"`
	Next    *string      `json:"next"`
	Total   int          `json:"total"`
}

func (a *Admin) domains(ctx *fasthttp.RequestCtx) error {
	args := ctx.QueryArgs()
	limit := DefaultDomainsPage
	if v := args.Peek("limit"); len(v) > 0 {
		n, err := strconv.Atoi(string(v))
		if err != nil || n < 1 || n > MaxDomainsPage {
			return invalidRequest("limit", "Invalid 'limit' %q: want a whole number from 1 to %d.", v, MaxDomainsPage)
		}
		limit = n
	}
	page, err := a.store.DomainsPage(string(args.Peek("after")), limit)
	if err != nil {
		return a.storeError(err)
	}
	out := DomainsPage{Domains: make([]DomainView, 0, len(page.Domains)), Total: page.Total}
	sums := a.sums(ctx)
	for _, d := range page.Domains {
		v, err := a.viewOf(d, 5, false)
		if err != nil {
			return a.storeError(err)
		}
		addReplicas(&v, sums)
		out.Domains = append(out.Domains, v)
	}
	if page.More && len(page.Domains) > 0 {
		next := page.Domains[len(page.Domains)-1].Name
		out.Next = &next
	}
	return writeJSON(ctx, out)
}

func (a *Admin) domain(ctx *fasthttp.RequestCtx, name string) error {
	d, err := a.store.Domain(name)
	if err != nil {
		return a.storeError(err)
	}
	v, err := a.viewOf(d, 50, true)
	if err != nil {
		return a.storeError(err)
	}
	addReplicas(&v, a.sums(ctx))
	return writeJSON(ctx, v)
}

// act applies an operator's routing action and returns the domain's view.
func (a *Admin) act(ctx *fasthttp.RequestCtx, name, action string) error {
	if a.router == nil {
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Code: "routing_disabled",
			Message: "Routing is disabled (trainer.enabled: false)."}
	}
	if _, err := a.store.Domain(name); err != nil {
		return a.storeError(err)
	}
	if _, err := a.router.Act(name, action); err != nil {
		return &apiError{Status: fasthttp.StatusConflict, Type: "invalid_request_error", Code: "invalid_transition", Message: err.Error()}
	}
	return a.domain(ctx, name)
}

// train queues a training run: 202 Accepted.
func (a *Admin) train(ctx *fasthttp.RequestCtx, name string) error {
	if a.trainer == nil {
		return &apiError{Status: fasthttp.StatusServiceUnavailable, Type: "server_error", Code: "training_disabled",
			Message: "Training is disabled (trainer.enabled: false)."}
	}
	if err := a.trainer.Trigger(name); err != nil {
		if errors.Is(err, router.ErrNotLeader) {
			return &apiError{Status: fasthttp.StatusConflict, Type: "invalid_request_error", Code: "not_leader", Message: err.Error()}
		}
		return a.storeError(err)
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	return writeJSON(ctx, map[string]string{"status": "queued", "domain": name})
}

// export streams a domain's pairs as OpenAI fine-tuning JSONL, oldest
// first. X-Understudy-Pairs carries the number of pairs stored when the
// export began, for progress bars.
//
// The status (200) goes out before the first pair is read, so an export
// that cannot finish (pairs the storage cannot read back, a shutdown) says
// so in its last line instead: an OpenAI error object,
//
//	{"error":{"message":"...","type":"server_error","param":null,"code":"export_incomplete"}}
//
// never a fine-tuning example, so no consumer takes the file for whole;
// `understudy export` leaves it out of its output and exits non-zero.
func (a *Admin) export(ctx *fasthttp.RequestCtx, name string) error {
	d, err := a.store.Domain(name)
	if err != nil {
		return a.storeError(err)
	}
	ctx.SetContentType("application/jsonl")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+name+`.jsonl"`)
	ctx.Response.Header.Set("X-Understudy-Pairs", strconv.FormatInt(d.Pairs, 10))
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		n, err := a.exportPairs(w, name)
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			a.log.Info("exported domain", "domain", name, "lines", n)
			return
		}
		a.log.Error("export incomplete", "domain", name, "lines", n, "err", err)
		incomplete := &openai.Error{
			Message: fmt.Sprintf("export of %s incomplete after %d pairs: %v", name, n, err),
			Type:    "server_error",
			Code:    "export_incomplete",
		}
		_, _ = w.Write(append(incomplete.Body(), '\n'))
		_ = w.Flush()
	})
	return nil
}

// exportPairs writes a domain's pairs to w as fine-tuning examples and
// returns how many it wrote. A pair's kept request messages are its
// conversation; a pair without them, or whose messages are not a JSON
// array, is its system prompt and input. Pairs the storage cannot read
// back are left out, and the error (storage.ErrDamaged) says how many.
func (a *Admin) exportPairs(w io.Writer, domain string) (int, error) {
	ft := openai.NewFineTuningWriter(w)
	n := 0
	err := a.store.Pairs(a.stop, domain, func(p storage.Pair) error {
		e := openai.FineTuningExample{System: p.System, Input: p.Input, Answer: p.Answer}
		if len(p.Messages) > 0 {
			var err error
			if e.Messages, err = openai.SplitMessages(p.Messages); err != nil {
				a.log.Warn("exporting pair: kept messages are not a JSON array, using system and input", "domain", domain, "id", p.ID, "err", err)
			}
		}
		if err := ft.Write(e); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("exporting %s: %w", domain, err)
	}
	return n, nil
}

// storeError is the client's error for a failed storage call.
func (a *Admin) storeError(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &apiError{Status: fasthttp.StatusNotFound, Type: "invalid_request_error", Code: "domain_not_found",
			Message: "No such domain."}
	}
	a.log.Error("reading storage", "err", err)
	return &apiError{Status: fasthttp.StatusInternalServerError, Type: "server_error", Message: "Reading storage failed: " + err.Error()}
}

func writeJSON(ctx *fasthttp.RequestCtx, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &apiError{Status: fasthttp.StatusInternalServerError, Type: "server_error", Message: err.Error()}
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	return nil
}
