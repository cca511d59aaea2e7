package gateway_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
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

// TestAdminMalformedRequestLogsNoSecrets sends the admin listener malformed
// requests carrying the admin token, with the log at debug level: the
// failure is logged, the token is not.
func TestAdminMalformedRequestLogsNoSecrets(t *testing.T) {
	const token = "adm-0123456789-do-not-log"
	cfg := config.Default()
	cfg.Admin.Token = token
	var logs logBuffer
	admin := gateway.NewAdmin(cfg, gateway.AdminDeps{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
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
