package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/router"
	"github.com/understudy-dev/understudy/storage"
)

// answerOf is what a client sees of one chat completion through the gateway.
type answerOf struct {
	status        int
	route, domain string
	hasDomain     bool
	refused       string // X-Understudy-Domain-Refused
	content       string
	err           error
}

// chatWith sends one chat completion with system prompt system and the
// spam text, and reads what the client sees.
func chatWith(client *http.Client, gwURL, system string) answerOf {
	body, _ := json.Marshal(map[string]any{"model": "teacher-sim", "messages": []map[string]string{
		{"role": "system", "content": system}, {"role": "user", "content": spamText}}})
	req, _ := http.NewRequest("POST", gwURL+"/chat/completions", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-client")
	resp, err := client.Do(req)
	if err != nil {
		return answerOf{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := answerOf{status: resp.StatusCode, route: resp.Header.Get("X-Understudy-Route"), err: err}
	a.domain, a.hasDomain = resp.Header.Get("X-Understudy-Domain"), len(resp.Header.Values("X-Understudy-Domain")) > 0
	a.refused = resp.Header.Get("X-Understudy-Domain-Refused")
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if json.Unmarshal(b, &c) == nil && len(c.Choices) > 0 {
		a.content = c.Choices[0].Message.Content
	}
	return a
}

// chatAll sends one request for each system prompt, 8 at a time, and
// returns the answers in the prompts' order.
func chatAll(gwURL string, systems []string) []answerOf {
	out := make([]answerOf, len(systems))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				out[i] = chatWith(client, gwURL, systems[i])
			}
		})
	}
	for i := range systems {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func prompts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d: classify this e-mail as spam or ham.", prefix, i)
	}
	return out
}

// TestNewAutomaticDomainsBounded: a client sending 5,000 distinct system
// prompts gets every answer from the teacher, but creates no more domains
// than gateway.max_auto_domains: in the pair log, the router and the admin
// list alike. The refused are counted and warned about once; a domain
// that existed before the bound was reached keeps learning.
func TestNewAutomaticDomainsBounded(t *testing.T) {
	const max, sent = 50, 5000
	rt, err := router.New(router.Config{}, router.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h := startRouted(t, teachersim.Config{}, func(c *config.Config) {
		c.Gateway.MaxAutoDomains, c.Gateway.NewDomainsPerMinute = max, 100000
	}, &storage.Options{}, rt)

	known := chatWith(http.DefaultClient, h.gwURL, spamSystem)
	if known.status != 200 || !strings.HasPrefix(known.domain, "auto-") {
		t.Fatalf("first prompt: %+v, want 200 in an automatic domain", known)
	}
	systems := prompts("Tenant", sent)
	answers := chatAll(h.gwURL, systems)
	admitted := map[string]bool{}
	for i, a := range answers {
		if a.err != nil || a.status != 200 || a.route != "teacher" || a.content != "spam" {
			t.Fatalf("prompt %d: %+v; want the teacher's answer, spam", i, a)
		}
		if a.hasDomain {
			if want := gateway.Fingerprint("teacher-sim", systems[i]); a.domain != want {
				t.Errorf("prompt %d: domain %q, want %q", i, a.domain, want)
			}
			admitted[a.domain] = true
		}
	}
	if len(admitted) != max-1 {
		t.Errorf("%d new domains admitted, want %d (max_auto_domains %d, one existed)", len(admitted), max-1, max)
	}
	if got := h.metric("understudy_gateway_domains_refused_total", map[string]string{"reason": "total"}); got != sent-(max-1) {
		t.Errorf("refused (total) = %v, want %d", got, sent-(max-1))
	}
	if got := h.metric("understudy_gateway_requests_total", map[string]string{"domain": router.NoDomain, "route": "teacher"}); got != sent-(max-1) {
		t.Errorf("requests of no domain answered by the teacher = %v, want %d", got, sent-(max-1))
	}
	if n := strings.Count(h.log.String(), "refusing new automatic domains"); n != 1 {
		t.Errorf("%d warnings about refused domains within a minute, want 1", n)
	}

	// The domain that existed keeps learning.
	for range 3 {
		if a := chatWith(http.DefaultClient, h.gwURL, spamSystem); a.domain != known.domain || a.content != "spam" {
			t.Errorf("known domain after the bound: %+v", a)
		}
	}
	waitFor(t, func() bool { return len(h.pairsOf(known.domain)) == 4 })

	// Only the admitted exist: in the pair log, the router and the admin list.
	if err := h.pairs.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := len(h.pairs.DomainNames("")); got != max {
		t.Errorf("pair log has %d domains, want %d", got, max)
	}
	views := 0
	for _, s := range append(systems, spamSystem) {
		if _, ok := rt.View(gateway.Fingerprint("teacher-sim", s)); ok {
			views++
		}
	}
	if views != max {
		t.Errorf("router knows %d of the prompts' domains, want %d", views, max)
	}
	ln := serveAdmin(t, gateway.NewAdmin(h.cfg, gateway.AdminDeps{Store: h.pairs, Router: rt, Logger: slog.New(slog.DiscardHandler)}))
	var page gateway.DomainsPage
	getJSON(t, "http://"+ln.Addr().String()+"/admin/domains?limit=1", &page)
	if page.Total != max {
		t.Errorf("admin list total %d, want %d", page.Total, max)
	}
}

// TestNewAutomaticDomainsRate: past gateway.new_domains_per_minute (and
// its burst of as many) new automatic domains are refused with reason
// rate, and answered by the teacher all the same.
func TestNewAutomaticDomainsRate(t *testing.T) {
	h := startWith(t, teachersim.Config{}, func(c *config.Config) { c.Gateway.NewDomainsPerMinute = 5 }, &storage.Options{})
	answers := chatAll(h.gwURL, prompts("Rate", 20))
	n := 0
	for i, a := range answers {
		if a.err != nil || a.status != 200 || a.content != "spam" {
			t.Fatalf("prompt %d: %+v, want the teacher's spam", i, a)
		}
		if a.hasDomain {
			n++
		} else if a.refused != "rate" {
			t.Errorf("prompt %d: no domain and X-Understudy-Domain-Refused %q, want rate", i, a.refused)
		}
	}
	if n != 5 {
		t.Errorf("%d domains admitted, want the burst of 5", n)
	}
	if got := h.metric("understudy_gateway_domains_refused_total", map[string]string{"reason": "rate"}); got != 15 {
		t.Errorf("refused (rate) = %v, want 15", got)
	}
	// Named domains are the operator's: never refused.
	status, hdr, _ := h.raw("POST", "/v1/chat/completions",
		[]byte(`{"model":"teacher-sim","messages":[{"role":"system","content":"Named 1"},{"role":"user","content":"`+spamText+`"}]}`),
		map[string]string{"X-Understudy-Domain": "named"})
	if status != 200 || hdr.Get("X-Understudy-Domain") != "named" {
		t.Errorf("named domain past the rate: %d, domain %q", status, hdr.Get("X-Understudy-Domain"))
	}
}

// TestKnownDomainsSurviveRestart: the automatic domains in the pair log
// pass the bound after a restart, whatever it says; a new one is still
// refused.
func TestKnownDomainsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	bound := func(c *config.Config) { c.Gateway.MaxAutoDomains = 3 }
	systems := prompts("Restart", 5)
	var before []answerOf
	t.Run("first run", func(t *testing.T) {
		h := startWith(t, teachersim.Config{}, bound, &storage.Options{Dir: dir})
		before = chatAll(h.gwURL, systems[:4])
		if err := h.pairs.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("after restart", func(t *testing.T) {
		h := startWith(t, teachersim.Config{}, bound, &storage.Options{Dir: dir})
		after := chatAll(h.gwURL, systems)
		for i := range 4 {
			if after[i].hasDomain != before[i].hasDomain || after[i].domain != before[i].domain {
				t.Errorf("prompt %d: domain %q (%v) after the restart, %q (%v) before", i, after[i].domain, after[i].hasDomain, before[i].domain, before[i].hasDomain)
			}
		}
		if after[4].hasDomain {
			t.Errorf("a new prompt past the bound got domain %q", after[4].domain)
		}
		if got := h.metric("understudy_gateway_domains_refused_total", map[string]string{"reason": "total"}); got != 2 {
			t.Errorf("refused after the restart = %v, want 2 (the fourth prompt again, and the fifth)", got)
		}
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
