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
	"github.com/understudy-dev/understudy/shadow"
)

// TestDomainDetail: `understudy domains NAME` reads GET
// /admin/domains/NAME and shows the domain's numbers, its agreement per
// field, its labels and its latest transitions; --json prints the admin
// API's object; flags may come after the name.
func TestDomainDetail(t *testing.T) {
	st := &shadow.Stats{Samples: 1200, Tau: 0.91, Confident: 900, SelectiveAgreement: 0.968, LowerBound: 0.951, Coverage: 0.83}
	view := gateway.DomainView{
		Name: "triage.schema-1a2b3c4d", State: string(router.Serving), Pairs: 5000, Labels: 3, LatestVersion: 3, LastSeen: time.Now(),
		TopLabels: []gateway.LabelCount{{Label: `{"kind":"phish","spam":true}`, Count: 2400}},
		Routing: &router.View{State: router.Serving, Serving: 3, ServingStats: st, Offload: 0.62, RecentOffload: 0.813, RecentAnswers: 1000,
			Routes:      map[router.Route]int64{router.RouteStudent: 62, router.RouteTeacher: 38},
			Transitions: []router.Transition{{Time: time.Now(), From: router.Shadowing, To: router.Serving, Version: 3, Reason: "v3 passed the gate"}}},
		Fields: []shadow.FieldStats{
			{Path: "kind", Samples: 1000, Confident: 900, Agree: 873, Agreement: 0.97, Coverage: 0.9},
			{Path: "meta.lang", Samples: 1000, Confident: 0, Coverage: 0},
		},
		FieldsVersion: 3,
	}
	var paths []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		_ = json.NewEncoder(w).Encode(view)
	}))
	defer admin.Close()

	code, out, errOut := runCLI("domains", view.Name, "--admin-url", admin.URL)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Logf("understudy domains %s:\n%s", view.Name, out)
	for _, want := range []string{"serving", "96.8% (≥ 95.1%) on 900 confident samples", "83.0%", "62.0% (81.3%)",
		"fields of v3", "FIELD", "kind       97.0%      900", "meta.lang  -          0", `2400  {"kind":"phish","spam":true}`, "v3 passed the gate"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if len(paths) != 1 || paths[0] != "/admin/domains/"+view.Name {
		t.Errorf("requested %v, want the domain's detail", paths)
	}

	code, out, errOut = runCLI("domains", view.Name, "--admin-url", admin.URL, "--json")
	var got gateway.DomainView
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got.Fields) != 2 || got.Fields[0].Path != "kind" {
		t.Errorf("--json: exit %d, %s %s", code, out, errOut)
	}

	if code, _, errOut := runCLI("domains", "a", "b", "--admin-url", admin.URL); code != 2 || !strings.Contains(errOut, `domains: unexpected argument "b"`) {
		t.Errorf("two names: exit %d, %s", code, errOut)
	}
}
