package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
)

// TestShutdownDelay stops a gateway in front of teacher-sim the way a
// signal does (its context is cancelled) and checks what a load balancer
// and its clients see: /readyz answers 503 at once; during
// gateway.shutdown_delay new connections are still accepted and chat
// requests answered; then the port closes, when the delay has run out or
// when Hurry (a second signal) cuts it short. Nothing here depends on
// timing: the long delay is only ever cut short, and the short one is only
// checked to have been waited out.
func TestShutdownDelay(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
		hurry bool // call Hurry while serving during the delay
	}{
		{"no delay", 0, false},
		{"delay runs out", 300 * time.Millisecond, false},
		{"second signal", time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			simURL := startSim(t)
			cfg := config.Default()
			cfg.Teacher.URL, cfg.Teacher.APIKey = simURL, "sk-teacher"
			cfg.Gateway.ShutdownDelay = tc.delay
			cfg.Gateway.ShutdownTimeout = 5 * time.Second
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			gw, err := gateway.New(cfg, gateway.Deps{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ln := listen(t)
			addr := ln.Addr().String()
			base := "http://" + addr
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			served := make(chan error, 1)
			go func() { served <- gw.Serve(ctx, ln) }()
			if code := get(t, base+"/readyz"); code != http.StatusOK {
				t.Fatalf("/readyz = %d before the stop, want 200", code)
			}

			stopped := time.Now()
			stop()
			if tc.hurry {
				// The stop is seen by Serve's goroutine: /readyz turns 503
				// without waiting for anything else.
				for get(t, base+"/readyz") != http.StatusServiceUnavailable {
					time.Sleep(time.Millisecond)
				}
				client := newClient(base+"/v1", "sk-client") // a new connection each request
				for _, ex := range spamTask.Examples {
					resp, err := client.Chat.Completions.New(context.Background(), chatParams(ex.Text))
					if err != nil {
						t.Fatalf("request during the shutdown delay: %v", err)
					}
					if got := resp.Choices[0].Message.Content; got != ex.Label {
						t.Errorf("answer %q during the shutdown delay, want %q", got, ex.Label)
					}
				}
				if code := get(t, base+"/healthz"); code != http.StatusOK {
					t.Errorf("/healthz = %d during the shutdown delay, want 200 (alive, only not ready)", code)
				}
				select {
				case err := <-served:
					t.Fatalf("Serve returned (%v) within an hour's delay without Hurry", err)
				default:
				}
				gw.Hurry()
			}
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if took := time.Since(stopped); took < tc.delay && !tc.hurry {
				t.Errorf("Serve returned %v after the stop, before gateway.shutdown_delay (%v)", took, tc.delay)
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Error("the port still accepts connections after Serve returned")
			}
		})
	}
}

// startSim runs teacher-sim with the spam task on loopback until the test
// ends and returns its base URL, ending in /v1.
func startSim(t *testing.T) string {
	t.Helper()
	srv, err := teachersim.New(teachersim.Config{Tasks: []teachersim.Task{spamTask}})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("teacher-sim Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/v1"
}

// get sends a GET on a new connection and returns the status.
func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
