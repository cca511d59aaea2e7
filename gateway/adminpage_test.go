package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/storage"
)

// domainStore opens a pair log holding n domains of one pair each, named
// auto-000000000000 and up (as Fingerprint names them), built directly
// rather than through n requests.
func domainStore(tb testing.TB, n int) *storage.DB {
	tb.Helper()
	db, err := storage.Open(storage.Options{Dir: tb.TempDir(), Logger: slog.New(slog.DiscardHandler), LogOptions: storage.LogOptions{QueueSize: n}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	for i := range n {
		if !db.Log(storage.Pair{Domain: fmt.Sprintf("auto-%012x", i), Input: "x", Answer: "spam", Label: "spam"}) {
			tb.Fatal("pair dropped")
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return db
}

// TestAdminDomainsPages: following next from the first page walks every
// domain exactly once, in name order, each page saying the total; a limit
// out of range is a 400 naming it.
func TestAdminDomainsPages(t *testing.T) {
	const n = 2500
	db := domainStore(t, n)
	base := "http://" + serveAdmin(t, gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: db, Logger: slog.New(slog.DiscardHandler)})).Addr().String()
	var names []string
	pages, after := 0, ""
	for {
		u := base + "/admin/domains?limit=1000"
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		var page gateway.DomainsPage
		getJSON(t, u, &page)
		pages++
		if page.Total != n {
			t.Errorf("page %d: total %d, want %d", pages, page.Total, n)
		}
		for _, d := range page.Domains {
			names = append(names, d.Name)
			if d.Pairs != 1 || len(d.TopLabels) != 1 {
				t.Errorf("%s: %d pairs, top labels %v; want 1 and spam", d.Name, d.Pairs, d.TopLabels)
			}
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	if pages != 3 || len(names) != n || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != n {
		t.Errorf("%d pages, %d names (sorted %v); want 3 pages of every domain once, in order", pages, len(names), slices.IsSorted(names))
	}
	var first gateway.DomainsPage
	getJSON(t, base+"/admin/domains", &first)
	if len(first.Domains) != gateway.DefaultDomainsPage || first.Next == nil || *first.Next != names[gateway.DefaultDomainsPage-1] {
		t.Errorf("default page: %d domains, next %v; want %d and the last of them", len(first.Domains), first.Next, gateway.DefaultDomainsPage)
	}
	for _, bad := range []string{"0", "1001", "lots"} {
		resp, err := http.Get(base + "/admin/domains?limit=" + bad)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || paramOf(body) != "limit" {
			t.Errorf("limit=%s: %d %s, want 400 naming limit", bad, resp.StatusCode, body)
		}
	}
}

// paramOf is the param of an OpenAI error object.
func paramOf(body []byte) string {
	var e struct {
		Error struct {
			Param string `json:"param"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Param
}

// BenchmarkAdminDomainsPage measures one page of GET /admin/domains with
// 70,000 domains stored: its time, and its size as bytes/page.
func BenchmarkAdminDomainsPage(b *testing.B) {
	db := domainStore(b, 70_000)
	admin := gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: db, Logger: slog.New(slog.DiscardHandler)})
	ln := listen(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	client := &http.Client{}
	defer client.CloseIdleConnections()
	for _, q := range []string{"", "?limit=1000", "?limit=100&after=auto-000000008000"} {
		b.Run("query="+q, func(b *testing.B) {
			var size int64
			for range b.N {
				resp, err := client.Get("http://" + ln.Addr().String() + "/admin/domains" + q)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				size = n
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}
