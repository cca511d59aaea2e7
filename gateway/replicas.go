package gateway

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
)

// Replicas are the replica views of the admin API: several gateway
// replicas can share one store (storage.backend nats), and each one's
// admin API shows the route counts, offload and dollars of them all.
//
//	GET /admin/replicas   the live replicas, each with its totals
//	GET /admin/status     totals summed over the live replicas
//
// Every replica announces what it counted since it started (Cluster.Run,
// through storage.ReplicaSet); a view adds the other live replicas'
// announced counts to this replica's own, read at the request. On a single
// gateway the set is this process alone, so the sums are its own numbers.
// A replica announces the domains its metrics name (metrics.max_domains,
// the first it saw) one by one and pools the rest, so a domain another
// replica pooled lacks that replica's share in its own view; the totals
// are whole.

// RouteCounts counts each domain's answers by route since this replica
// started: what it announces to the others, and the totals of GET
// /admin/status. (Among replicas the router's own counts start at zero
// too; on a single gateway they carry on from the stored routing record,
// which these do not.) It is safe for concurrent use.
type RouteCounts struct {
	mu sync.RWMutex
	m  map[string]*routeCounters
}

// routeCounters are one domain's counts, indexed as routeNames.
type routeCounters [len(routeNames)]atomic.Int64

// routeNames are the routes counted, as the router names them.
var routeNames = [...]router.Route{router.RouteTeacher, router.RouteStudent, router.RouteDeferred, router.RouteFallback}

// NewRouteCounts returns empty counts.
func NewRouteCounts() *RouteCounts { return &RouteCounts{m: map[string]*routeCounters{}} }

// Router returns r counting, in c, the route of every answer it is told.
func (c *RouteCounts) Router(r Router) Router { return countingRouter{r, c} }

type countingRouter struct {
	Router
	c *RouteCounts
}

func (r countingRouter) Answered(o router.Outcome) {
	r.c.add(o.Domain, o.Route)
	r.Router.Answered(o)
}

func (c *RouteCounts) add(domain string, route router.Route) {
	i := 0
	for i < len(routeNames) && routeNames[i] != route {
		i++
	}
	if i == len(routeNames) {
		return
	}
	c.mu.RLock()
	rc := c.m[domain]
	c.mu.RUnlock()
	if rc == nil {
		c.mu.Lock()
		if rc = c.m[domain]; rc == nil {
			rc = new(routeCounters)
			c.m[domain] = rc
		}
		c.mu.Unlock()
	}
	rc[i].Add(1)
}

// each calls fn with every domain's counts, the routes with none left out.
func (c *RouteCounts) each(fn func(domain string, routes map[string]int64)) {
	c.mu.RLock()
	m := maps.Clone(c.m)
	c.mu.RUnlock()
	for d, rc := range m {
		routes := map[string]int64{}
		for i, name := range routeNames {
			if n := rc[i].Load(); n > 0 {
				routes[string(name)] = n
			}
		}
		fn(d, routes)
	}
}

// ReplicaSource is what the replica views ask of the store: the replica
// set, and whether this replica holds the learner lease.
type ReplicaSource interface {
	Held() bool
	Replica() string
	Announce(ctx context.Context, version string, report func() storage.ReplicaCounters) error
	Replicas(ctx context.Context) ([]storage.Replica, error)
}

var _ ReplicaSource = (*storage.DB)(nil)

// Cluster is this replica among those sharing the store: it announces
// its counters (Run) and reads every live replica's for the admin API.
type Cluster struct {
	set     ReplicaSource
	counts  *RouteCounts
	costs   CostSource
	domains *router.MetricDomains
	version string
	log     *slog.Logger
}

// ClusterDeps are a Cluster's collaborators.
type ClusterDeps struct {
	Replicas ReplicaSource
	// Counts are this replica's route counts (RouteCounts.Router wraps
	// the router the gateway asks); nil when it has no router.
	Counts *RouteCounts
	// Costs reports spend and savings; nil reports none.
	Costs CostSource
	// Domains bounds the domains a replica announces one by one, as it
	// bounds the metrics' domain label: share the gateway's.
	Domains *router.MetricDomains
	// Version is the binary's version, "" when unknown.
	Version string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewCluster returns this replica's Cluster.
func NewCluster(deps ClusterDeps) *Cluster {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Domains == nil {
		deps.Domains = router.NewMetricDomains(router.DefaultMaxDomains)
	}
	return &Cluster{set: deps.Replicas, counts: deps.Counts, costs: deps.Costs, domains: deps.Domains, version: deps.Version, log: deps.Logger}
}

// Run announces this replica until ctx ends.
func (c *Cluster) Run(ctx context.Context) error {
	return c.set.Announce(ctx, c.version, c.Counters)
}

// Counters are this replica's counts since it started: the domains that
// metrics name one by one, the others pooled.
func (c *Cluster) Counters() storage.ReplicaCounters {
	var out storage.ReplicaCounters
	if c.counts == nil {
		return out
	}
	c.counts.each(func(d string, routes map[string]int64) {
		dc := storage.DomainCounters{Routes: routes}
		if c.costs != nil {
			dc.SpentDollars, dc.SavedDollars = c.costs.Costs(d)
		}
		if c.domains.Named(d) {
			if out.Domains == nil {
				out.Domains = map[string]storage.DomainCounters{}
			}
			out.Domains[d] = dc
			return
		}
		if out.Other == nil {
			out.Other = &storage.DomainCounters{Routes: map[string]int64{}}
		}
		addCounters(out.Other, dc)
	})
	return out
}

// addCounters adds b's counts to a's.
func addCounters(a *storage.DomainCounters, b storage.DomainCounters) {
	if a.Routes == nil {
		a.Routes = map[string]int64{}
	}
	for r, n := range b.Routes {
		a.Routes[r] += n
	}
	a.SpentDollars += b.SpentDollars
	a.SavedDollars += b.SavedDollars
}

// live returns the live replicas, oldest first, this one with its counts
// as of now (added when the store does not list it yet: it announces
// itself within seconds of starting), and which one it is. When the store
// cannot list them it returns this replica alone and logs why.
func (c *Cluster) live(ctx context.Context) ([]storage.Replica, int) {
	self := c.set.Replica()
	rs, err := c.set.Replicas(ctx)
	if err != nil {
		c.log.Warn("replicas: listing the live replicas; showing this one's counts alone", "err", err)
		rs = nil
	}
	mine := -1
	for i := range rs {
		if rs[i].ID == self {
			mine = i
		}
	}
	if mine < 0 {
		rs = append(rs, storage.Replica{ID: self})
		mine = len(rs) - 1
	}
	rs[mine].ReplicaCounters, rs[mine].Leader = c.Counters(), c.set.Held()
	return rs, mine
}

// Totals are counts summed over domains (and, in GET /admin/status, over
// replicas), since each replica started.
type Totals struct {
	// Requests are the answers of every route.
	Requests int64            `json:"requests"`
	Routes   map[string]int64 `json:"routes"`
	// Offload is the share of those answers a student gave.
	Offload      float64 `json:"offload"`
	SpentDollars float64 `json:"spent_dollars"`
	SavedDollars float64 `json:"saved_dollars"`
	PairsLogged  uint64  `json:"pairs_logged"`
	PairsDropped uint64  `json:"pairs_dropped"`
}

func (t *Totals) add(r storage.Replica) {
	if t.Routes == nil {
		t.Routes = map[string]int64{}
	}
	all := storage.DomainCounters{Routes: t.Routes}
	for _, dc := range r.Domains {
		addCounters(&all, dc)
	}
	if r.Other != nil {
		addCounters(&all, *r.Other)
	}
	t.SpentDollars += all.SpentDollars
	t.SavedDollars += all.SavedDollars
	t.PairsLogged += r.PairsLogged
	t.PairsDropped += r.PairsDropped
	t.Requests = 0
	for _, n := range t.Routes {
		t.Requests += n
	}
	t.Offload = offload(t.Routes)
}

// offload is the share of answers a student gave, as router.View counts it.
func offload(routes map[string]int64) float64 {
	var total int64
	for _, n := range routes {
		total += n
	}
	if total == 0 {
		return 0
	}
	return float64(routes[string(router.RouteStudent)]+routes[string(router.RouteFallback)]) / float64(total)
}

// ReplicaView is one live replica in GET /admin/replicas.
type ReplicaView struct {
	ID       string    `json:"id"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Version  string    `json:"version,omitempty"`
	Leader   bool      `json:"leader"`
	Started  time.Time `json:"started"`
	LastSeen time.Time `json:"last_seen"`
	// ThisReplica marks the replica whose admin API answered.
	ThisReplica bool   `json:"this_replica"`
	Totals      Totals `json:"totals"`
}

// ReplicasView is the body of GET /admin/replicas: the live replicas,
// oldest first.
type ReplicasView struct {
	Replicas []ReplicaView `json:"replicas"`
	Count    int           `json:"count"`
}

// StatusView is the body of GET /admin/status.
type StatusView struct {
	// Replica is the ID of the replica that answered; Leader whether it
	// holds the learner lease.
	Replica string `json:"replica"`
	Leader  bool   `json:"leader"`
	// Replicas is how many live replicas Totals sums.
	Replicas int `json:"replicas"`
	// Totals are the counts of every live replica since it started;
	// ThisReplica this one's share.
	Totals      Totals `json:"totals"`
	ThisReplica Totals `json:"this_replica"`
}

// replicas answers GET /admin/replicas.
func (c *Cluster) replicas(ctx context.Context) ReplicasView {
	rs, mine := c.live(ctx)
	out := ReplicasView{Replicas: make([]ReplicaView, 0, len(rs)), Count: len(rs)}
	for i, r := range rs {
		v := ReplicaView{ID: r.ID, Host: r.Host, PID: r.PID, Version: r.Version, Leader: r.Leader,
			Started: r.Started, LastSeen: r.LastSeen, ThisReplica: i == mine}
		v.Totals.add(r)
		out.Replicas = append(out.Replicas, v)
	}
	return out
}

// status answers GET /admin/status.
func (c *Cluster) status(ctx context.Context) StatusView {
	rs, mine := c.live(ctx)
	out := StatusView{Replica: rs[mine].ID, Leader: rs[mine].Leader, Replicas: len(rs)}
	for _, r := range rs {
		out.Totals.add(r)
	}
	out.ThisReplica.add(rs[mine])
	return out
}

// domainSums are the other live replicas' counts of each domain, for the
// domain views.
type domainSums struct {
	replicas int // live replicas, this one included
	others   []storage.Replica
}

func (c *Cluster) sums(ctx context.Context) domainSums {
	rs, mine := c.live(ctx)
	return domainSums{replicas: len(rs), others: append(rs[:mine:mine], rs[mine+1:]...)}
}

// of returns the other replicas' counts of a domain, summed, and whether
// any has one.
func (s domainSums) of(domain string) (storage.DomainCounters, bool) {
	var sum storage.DomainCounters
	found := false
	for _, r := range s.others {
		if dc, ok := r.Domains[domain]; ok {
			addCounters(&sum, dc)
			found = true
		}
	}
	return sum, found
}
