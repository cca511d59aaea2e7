package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/shadow"
	"github.com/understudy-dev/understudy/storage"
)

// TestAdminStructuredDomain runs a structured domain through every real
// part: the gateway logs the teacher's JSON records, the router hands them
// to the shadow pool, which scores a candidate student trained on such
// records; the admin API then shows the domain's agreement per field (in
// its detail, not in the listing), and exports its pairs with each
// teacher's JSON answer as the assistant's content, unchanged.
func TestAdminStructuredDomain(t *testing.T) {
	a, err := triageArtifact()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pool := shadow.NewPool(shadow.PoolConfig{Linger: time.Millisecond}, shadow.PoolDeps{})
	poolDone := make(chan error, 1)
	go func() { poolDone <- pool.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-poolDone })
	// The gate needs more samples than the test sends: the version stays
	// a candidate, scored on every request.
	rt, err := router.New(router.Config{Gate: shadow.Gate{MinSamples: 100_000}}, router.Deps{Shadow: pool.Submit})
	if err != nil {
		t.Fatal(err)
	}
	h := startRouted(t, teachersim.Config{Tasks: []teachersim.Task{triageTask}}, nil, &storage.Options{}, rt)

	var texts []string
	for word := range triageAnswers {
		for i := range 20 {
			texts = append(texts, triageText(word, i))
		}
	}
	slices.Sort(texts)
	schema := format{schema: triageSchema("phish", "promo", "none")}
	first := askStructured(h.gw, "chat", texts[0], schema)
	domain := first.header.Get("X-Understudy-Domain")
	if first.err != nil || !strings.HasPrefix(domain, "mail.schema-") {
		t.Fatalf("first request: %v, domain %q", first.err, domain)
	}
	v := *a
	v.Domain = domain
	if err := rt.AddVersion(&v, nil); err != nil {
		t.Fatal(err)
	}
	for _, text := range texts {
		if r := askStructured(h.gw, "chat", text, schema); r.err != nil || r.route != "teacher" {
			t.Fatalf("%s: %v by %q", text, r.err, r.route)
		}
	}
	waitFor(t, func() bool {
		rv, _ := rt.View(domain)
		return rv.CandidateStats != nil && rv.CandidateStats.Uniform == int64(len(texts))
	})
	if err := h.pairs.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	admin := serveAdmin(t, gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: h.pairs, Router: rt}))
	base := "http://" + admin.Addr().String() + "/admin/domains"
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s %v", path, resp.StatusCode, b, err)
		}
		return b
	}

	var detail struct {
		Fields []struct {
			Path      string   `json:"path"`
			Agreement *float64 `json:"agreement"`
			Samples   *int64   `json:"samples"`
			Confident *int64   `json:"confident"`
			Agree     *int64   `json:"agree"`
			Coverage  *float64 `json:"coverage"`
		} `json:"fields"`
		FieldsVersion int `json:"fields_version"`
	}
	body := get("/" + domain)
	t.Logf("GET /admin/domains/%s: %s", domain, body)
	if err := json.Unmarshal(body, &detail); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range detail.Fields {
		paths = append(paths, f.Path)
		if f.Agreement == nil || f.Samples == nil || f.Coverage == nil || f.Confident == nil || f.Agree == nil {
			t.Errorf("field %s lacks a number: %s", f.Path, body)
			continue
		}
		if *f.Samples != int64(len(texts)) || *f.Coverage < 0 || *f.Coverage > 1 || *f.Agreement < 0 || *f.Agreement > 1 {
			t.Errorf("field %s: %d samples, agreement %v, coverage %v; want %d samples and shares", f.Path, *f.Samples, *f.Agreement, *f.Coverage, len(texts))
		}
	}
	if want := []string{"kind", "meta.lang", "spam", "tags"}; !slices.Equal(paths, want) || detail.FieldsVersion != 1 {
		t.Errorf("fields %v of v%d, want %v of v1:\n%s", paths, detail.FieldsVersion, want, body)
	}
	// A student that learned the records agrees on the fields it is sure of.
	for _, f := range detail.Fields {
		if *f.Confident > 0 && *f.Agreement < 0.9 {
			t.Errorf("field %s: agreement %v on %d confident samples", f.Path, *f.Agreement, *f.Confident)
		}
	}
	if list := get(""); strings.Contains(string(list), `"fields"`) || !strings.Contains(string(list), domain) {
		t.Errorf("the listing shows fields, or not the domain:\n%s", list)
	}

	// The export: the conversation as sent, the teacher's record as it
	// said it.
	lines := strings.Split(strings.TrimSuffix(string(get("/"+domain+"/export")), "\n"), "\n")
	if len(lines) != len(texts)+1 {
		t.Fatalf("%d exported lines, want %d", len(lines), len(texts)+1)
	}
	for _, l := range lines {
		var ex struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		if err := json.Unmarshal([]byte(l), &ex); err != nil || len(ex.Messages) != 3 {
			t.Fatalf("line %s: %v", l, err)
		}
		user, answer := ex.Messages[1], ex.Messages[2]
		word, _, _ := strings.Cut(user.Content, " ")
		if ex.Messages[0].Content != triageSystem || answer.Role != "assistant" || answer.Content != triageAnswers[word] {
			t.Errorf("line %s: want the system prompt, the input and the teacher's record %s", l, triageAnswers[word])
		}
	}
}
