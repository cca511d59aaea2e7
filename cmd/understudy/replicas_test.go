package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/router"
)

// TestStatusReplicas: status lists the replicas — which leads, when each
// was last seen, how many requests it answered — when the admin API
// reports more than one, and no such table for one; domains NAME says
// its counts are summed and what this replica's share is.
func TestStatusReplicas(t *testing.T) {
	now := time.Now()
	view := gateway.DomainView{
		Name: "spam", State: string(router.Collecting), Pairs: 10, Labels: 2, LastSeen: now, Replicas: 2,
		Routing:     &router.View{State: router.Collecting, Routes: map[router.Route]int64{router.RouteTeacher: 10}},
		ThisReplica: &gateway.OwnCounts{Routes: map[router.Route]int64{router.RouteTeacher: 4}},
	}
	two := gateway.ReplicasView{Count: 2, Replicas: []gateway.ReplicaView{
		{ID: "a/1/AAAA", Leader: true, LastSeen: now, ThisReplica: true, Totals: gateway.Totals{Requests: 4}},
		{ID: "b/2/BBBB", LastSeen: now, Totals: gateway.Totals{Requests: 6}},
	}}
	for _, tc := range []struct {
		name     string
		replicas gateway.ReplicasView
		want     []string
		notWant  []string
	}{
		{"two", two, []string{"2 replicas", "REPLICA", "LEADER", "LAST SEEN", "REQUESTS", "a/1/AAAA (this)", "yes", "b/2/BBBB"}, nil},
		{"one", gateway.ReplicasView{Count: 1, Replicas: two.Replicas[:1]}, nil, []string{"REPLICA", "a/1/AAAA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/admin/replicas":
					_ = json.NewEncoder(w).Encode(tc.replicas)
				case "/admin/domains/spam":
					_ = json.NewEncoder(w).Encode(view)
				default:
					_ = json.NewEncoder(w).Encode(gateway.DomainsPage{Domains: []gateway.DomainView{view}, Total: 1})
				}
			}))
			defer admin.Close()
			code, out, errOut := runCLI("status", "--admin-url", admin.URL)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("status lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("status has %q:\n%s", w, out)
				}
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "a/1/") && !strings.HasSuffix(line, " 4") || strings.HasPrefix(line, "b/2/") && !strings.HasSuffix(line, " 6") {
					t.Errorf("replica row without its requests: %q", line)
				}
			}
			code, out, errOut = runCLI("domains", "spam", "--admin-url", admin.URL)
			if code != 0 || !strings.Contains(out, "2 (counts summed); this one: 4 answers") {
				t.Errorf("domains spam: exit %d %s:\n%s", code, errOut, out)
			}
		})
	}
}
