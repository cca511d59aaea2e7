package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/storage"
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveAdmin serves admin on a loopback listener until the test ends.
func serveAdmin(t *testing.T, admin *gateway.Admin) net.Listener {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin Serve: %v", err)
		}
	})
	return ln
}

// TestAdminMalformedRequestLogsNoSecrets sends the admin listener malformed
// requests carrying the admin token, with the log at debug level: the
// failure is logged, the token is not.
func TestAdminMalformedRequestLogsNoSecrets(t *testing.T) {
	const token = "adm-0123456789-do-not-log"
	cfg := config.Default()
	cfg.Admin.Token = token
	var logs logBuffer
	admin := gateway.NewAdmin(cfg, gateway.AdminDeps{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ln := serveAdmin(t, admin)

	for _, tc := range []struct{ name, req string }{
		{"header line without a colon", "GET /admin/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nno colon here\r\n\r\n"},
		{"bad content length", "POST /admin/domains/x/train HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nContent-Length: -5\r\n\r\n"},
		{"bad request line", "GET\x01 /admin/domains HTTP/1.1\r\nAuthorization: Bearer " + token + "\r\nHost: x\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(logs.String(), "error when serving connection")
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, _ := io.ReadAll(c)
			if !bytes.HasPrefix(resp, []byte("HTTP/1.1 400")) {
				t.Errorf("answer %.100q; want a 400", resp)
			}
			// The connection's error is logged after its answer: wait for it.
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(logs.String(), "error when serving connection") == before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			out := logs.String()
			if strings.Count(out, "error when serving connection") == before {
				t.Fatalf("the malformed request was not logged at debug level; log:\n%s", out)
			}
			if strings.Contains(out, token) || strings.Contains(out, "Authorization") {
				t.Errorf("the log shows the request's Authorization header:\n%s", out)
			}
		})
	}
}

// TestAdminExport exports a domain's pairs: one fine-tuning line each,
// oldest first; kept request messages are the conversation, and kept
// messages that are not an array give way to the system prompt and input,
// with a warning.
func TestAdminExport(t *testing.T) {
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	db, err := storage.Open(storage.Options{Dir: t.TempDir(), Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now().Add(-time.Minute)
	for i, p := range []storage.Pair{
		{System: "Classify.", Input: "Buy <b>now</b> & save", Answer: "spam"},
		{Input: "hi", Answer: "ham", Messages: json.RawMessage(`[ {"role": "system", "content": "S"}, {"role": "user", "content": "hi"} ]`)},
		{Input: "x", Answer: "ham", Messages: json.RawMessage(`{"oops":1}`)},
	} {
		p.Domain, p.Label, p.Time = "mail", p.Answer, t0.Add(time.Duration(i)*time.Millisecond)
		if !db.Log(p) {
			t.Fatal("pair dropped")
		}
	}
	if err := db.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln := serveAdmin(t, gateway.NewAdmin(config.Default(), gateway.AdminDeps{Store: db, Logger: log}))

	resp, err := http.Get("http://" + ln.Addr().String() + "/admin/domains/mail/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"messages":[{"role":"system","content":"Classify."},{"role":"user","content":"Buy <b>now</b> & save"},{"role":"assistant","content":"spam"}]}
{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"},{"role":"assistant","content":"ham"}]}
{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"ham"}]}
`
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("status %d, body\n%s\nwant 200 and\n%s", resp.StatusCode, body, want)
	}
	if got := resp.Header.Get("X-Understudy-Pairs"); got != "3" {
		t.Errorf("X-Understudy-Pairs = %q, want 3", got)
	}
	if out := logs.String(); !strings.Contains(out, "kept messages are not a JSON array") || !strings.Contains(out, "exported domain") {
		t.Errorf("log lacks the warning for the pair whose kept messages are not an array, or the export's end:\n%s", out)
	}
}
