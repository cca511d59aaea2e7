package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/storage"
)

// TestExportSaysWhenIncomplete exports a domain through the admin API and
// `understudy export`, from a real pair log, before and after one pair's
// text is damaged on disk. Before, the damaged export stopped at that pair
// with HTTP 200 and the command exited 0, as if the file were whole.
func TestExportSaysWhenIncomplete(t *testing.T) {
	const n, victim, token = 300, 150, "adm-export-test-token"
	dir := t.TempDir()
	db, err := storage.Open(storage.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < n; i++ {
		in := fmt.Sprintf("message %03d", i)
		if i == victim {
			in += " VICTIM-0123456789abcdef"
		}
		if !db.Log(storage.Pair{Domain: "spam", Input: in + strings.Repeat(" lorem ipsum", 30), Answer: "ham", Label: "ham"}) {
			t.Fatal("Log dropped a pair")
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.Admin.Token = token
	admin := gateway.NewAdmin(cfg, gateway.AdminDeps{Store: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- admin.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("admin Serve: %v", err)
		}
	}()
	base := "http://" + ln.Addr().String()

	export := func(t *testing.T) (out string, err error) {
		t.Helper()
		out = filepath.Join(t.TempDir(), "spam.jsonl")
		var stdout, stderr bytes.Buffer
		err = run(context.Background(), []string{"export", "--admin-url", base, "--token", token, "--domain", "spam", "--out", out}, &stdout, &stderr)
		b, rerr := os.ReadFile(out)
		if rerr != nil {
			t.Fatal(rerr)
		}
		return string(b), err
	}
	checkLines := func(t *testing.T, body string, want int) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
		if len(lines) != want {
			t.Errorf("%d lines in the file, want %d", len(lines), want)
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, `{"messages":[`) {
				t.Errorf("line %d is not a fine-tuning example: %.120s", i+1, l)
			}
		}
	}

	t.Run("whole", func(t *testing.T) {
		body, err := export(t)
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		checkLines(t, body, n)
	})

	// Damage the victim's text in the value log, as a failing disk would.
	vlogs, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
	damaged := false
	for _, p := range vlogs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte("VICTIM-0123456789abcdef")); i >= 0 {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte{b[i+10] ^ 0x20}, int64(i+10)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			damaged = true
		}
	}
	if !damaged {
		t.Fatal("the victim's text is not in the value log")
	}

	t.Run("damaged value: the command", func(t *testing.T) {
		body, err := export(t)
		if err == nil {
			t.Fatal("export of a damaged domain succeeded (exit 0)")
		}
		if exitCode(err) != 1 {
			t.Errorf("exit code %d, want 1", exitCode(err))
		}
		for _, s := range []string{"export of spam is INCOMPLETE", fmt.Sprint(n-1, " pairs written to "), "1 pairs could not be read back"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error does not say %q: %v", s, err)
			}
		}
		checkLines(t, body, n-1) // every readable pair, and no error line
		if strings.Contains(body, "VICTIM") {
			t.Error("the damaged pair was exported")
		}
	})

	t.Run("damaged value: HTTP", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/admin/domains/spam/export", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		last := lines[len(lines)-1]
		if len(lines) != n || !strings.HasPrefix(last, `{"error":{`) || !strings.Contains(last, `"code":"export_incomplete"`) {
			t.Errorf("status %d, %d lines, last %.300s; want %d pairs then an error object with code export_incomplete", resp.StatusCode, len(lines), last, n-1)
		}
	})
}
