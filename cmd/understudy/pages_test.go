package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/storage"
)

// TestListingsReadEveryPage: status and domains, against a server with
// more domains than one page of the admin API holds, list every one of
// them; --limit shows the first N and says how many there are.
func TestListingsReadEveryPage(t *testing.T) {
	const n = 2 * gateway.MaxDomainsPage // two full pages, and 5 more
	db, err := storage.Open(storage.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range n + 5 {
		db.Log(storage.Pair{Domain: fmt.Sprintf("d%05d", i), Input: "x", Answer: "a", Label: "a"})
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: db, Logger: slog.New(slog.DiscardHandler)}).Serve(ctx, ln)
	}()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String()

	for _, cmd := range []string{"status", "domains"} {
		code, out, errOut := runCLI(cmd, "--admin-url", url)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", cmd, code, errOut)
		}
		for _, name := range []string{"d00000", fmt.Sprintf("d%05d", gateway.MaxDomainsPage), fmt.Sprintf("d%05d", n+4)} {
			if !strings.Contains(out, name+" ") {
				t.Errorf("%s lacks %s", cmd, name)
			}
		}
		if rows := strings.Count(out, "\nd"); rows != n+5 {
			t.Errorf("%s: %d rows, want %d", cmd, rows, n+5)
		}
		code, out, errOut = runCLI(cmd, "--admin-url", url, "--limit", "10")
		if code != 0 {
			t.Fatalf("%s --limit 10: exit %d: %s", cmd, code, errOut)
		}
		if rows := strings.Count(out, "\nd"); rows != 10 || !strings.Contains(out, fmt.Sprintf("10 of %d domains shown", n+5)) {
			t.Errorf("%s --limit 10: %d rows:\n%s", cmd, rows, out)
		}
	}
}
