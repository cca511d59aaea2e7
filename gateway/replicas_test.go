package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
	"github.com/understudy-dev/understudy/storage/jetstream"
)

// fixedCosts reports the same dollars for every domain.
type fixedCosts struct{ spent, saved float64 }

func (c fixedCosts) Costs(string) (float64, float64) { return c.spent, c.saved }

// natsServer starts a nats-server with JetStream on loopback until the
// test ends.
func natsServer(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready after 30s")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv.ClientURL()
}

// replica is one gateway replica's admin side on a shared NATS store.
type replica struct {
	store  *jetstream.Store
	router gateway.Router // counts into its Cluster
	admin  string         // base URL
	stop   func()         // stops announcing (a clean stop)
}

func startReplica(t *testing.T, url string, costs fixedCosts) *replica {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st, err := jetstream.Open(jetstream.Options{URL: url, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rt, err := router.New(router.Config{}, router.Deps{Store: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	domains := router.NewMetricDomains(10)
	domains.Name("spam") // as the gateway's metrics admit it on its first request
	counts := gateway.NewRouteCounts()
	cluster := gateway.NewCluster(gateway.ClusterDeps{Replicas: st, Counts: counts, Costs: costs, Domains: domains, Version: "test", Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = cluster.Run(ctx)
	}()
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	ln := serveAdmin(t, gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: st, Router: rt, Costs: costs, Cluster: cluster, Logger: log}))
	return &replica{store: st, router: counts.Router(rt), admin: "http://" + ln.Addr().String(), stop: stop}
}

func (r *replica) answer(domain string, route router.Route, n int) {
	for range n {
		r.router.Answered(router.Outcome{Domain: domain, Route: route})
	}
}

func fetchJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// eventually polls cond until it holds, within a generous deadline: the
// replicas announce themselves every few seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 60s: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAdminReplicaSums: two gateway replicas share a real NATS JetStream
// store. Each one's admin API shows a domain's route counts, offload and
// dollars summed over both, with its own share under this_replica; lists
// both replicas; and, once the other stopped, shows its own numbers alone.
func TestAdminReplicaSums(t *testing.T) {
	url := natsServer(t)
	a := startReplica(t, url, fixedCosts{spent: 1, saved: 2})
	b := startReplica(t, url, fixedCosts{spent: 0.5, saved: 4})
	if !a.store.Log(storage.Pair{Domain: "spam", Input: "win money", Answer: "spam", Label: "spam"}) {
		t.Fatal("Log dropped the pair")
	}
	if err := a.store.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.answer("spam", router.RouteTeacher, 3)
	a.answer("spam", router.RouteStudent, 1)
	b.answer("spam", router.RouteTeacher, 2)
	b.answer("spam", router.RouteStudent, 3)
	b.answer("spam", router.RouteFallback, 1)

	for _, tc := range []struct {
		name string
		r    *replica
		own  map[router.Route]int64
	}{
		{"a", a, map[router.Route]int64{"teacher": 3, "student": 1}},
		{"b", b, map[router.Route]int64{"teacher": 2, "student": 3, "student-fallback": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d gateway.DomainView
			eventually(t, "domain view summed over two replicas", func() bool {
				return fetchJSON(t, tc.r.admin+"/admin/domains/spam", &d) && d.Replicas == 2 && d.ThisReplica != nil &&
					d.Routing != nil && d.Routing.Routes["teacher"] == 5
			})
			want := map[router.Route]int64{"teacher": 5, "student": 4, "student-fallback": 1}
			if !maps.Equal(d.Routing.Routes, want) || d.Routing.Offload != 0.5 {
				t.Errorf("summed routes %v offload %v; want %v, 0.5", d.Routing.Routes, d.Routing.Offload, want)
			}
			if d.SpentDollars != 1.5 || d.SavedDollars != 6 {
				t.Errorf("summed dollars: spent %v saved %v; want 1.5, 6", d.SpentDollars, d.SavedDollars)
			}
			if !maps.Equal(d.ThisReplica.Routes, tc.own) {
				t.Errorf("this_replica routes %v; want %v", d.ThisReplica.Routes, tc.own)
			}

			var page gateway.DomainsPage
			if !fetchJSON(t, tc.r.admin+"/admin/domains", &page) || len(page.Domains) != 1 {
				t.Fatalf("domains page: %+v", page)
			}
			if p := page.Domains[0]; p.Replicas != 2 || p.Routing == nil || !maps.Equal(p.Routing.Routes, want) {
				t.Errorf("domains page: replicas %d, routing %+v; want 2, %v", p.Replicas, p.Routing, want)
			}

			var rs gateway.ReplicasView
			if !fetchJSON(t, tc.r.admin+"/admin/replicas", &rs) || rs.Count != 2 || len(rs.Replicas) != 2 {
				t.Fatalf("replicas: %+v", rs)
			}
			mine := 0
			var requests int64
			for _, r := range rs.Replicas {
				requests += r.Totals.Requests
				if r.ThisReplica {
					mine++
					if r.ID != tc.r.store.Replica() || r.Totals.Requests != sumRoutes(tc.own) {
						t.Errorf("this replica: %+v", r)
					}
				}
				if r.Host == "" || r.PID == 0 || r.Started.IsZero() || r.Version != "test" {
					t.Errorf("replica without host, pid, started or version: %+v", r)
				}
			}
			if mine != 1 || requests != 10 {
				t.Errorf("replicas: %d marked this_replica, %d requests; want 1, 10", mine, requests)
			}

			var st gateway.StatusView
			if !fetchJSON(t, tc.r.admin+"/admin/status", &st) || st.Replicas != 2 || st.Totals.Requests != 10 ||
				st.ThisReplica.Requests != sumRoutes(tc.own) || st.Totals.Offload != 0.5 || st.Totals.SavedDollars != 6 {
				t.Errorf("status: %+v", st)
			}
		})
	}

	b.stop() // withdraws its entry
	var d gateway.DomainView
	eventually(t, "a alone after b stopped", func() bool {
		return fetchJSON(t, a.admin+"/admin/domains/spam", &d) && d.Replicas == 1
	})
	if d.ThisReplica != nil || !maps.Equal(d.Routing.Routes, map[router.Route]int64{"teacher": 3, "student": 1}) || d.SpentDollars != 1 {
		t.Errorf("a alone: this_replica %+v, routes %v, spent %v; want none, a's own, 1", d.ThisReplica, d.Routing.Routes, d.SpentDollars)
	}
}

func sumRoutes(m map[router.Route]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
