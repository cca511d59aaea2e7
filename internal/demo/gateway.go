package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/understudy-dev/understudy/student"
)

// gatewayConfig is the gateway's config: the defaults a user gets, and the
// teacher's prices for the cost metrics.
const gatewayConfig = `# written by understudy demo
teacher:
  api_key: demo
pricing:
  models:
    %s: {input: %g, output: %g}
log:
  level: info
`

// Gateway timeouts.
const (
	startTimeout = 30 * time.Second // process start → both listeners and /readyz
	stopTimeout  = 30 * time.Second // SIGTERM → exit, then SIGKILL
	logTailLines = 40
)

// gateway is the gateway child process.
type gateway struct {
	cmd       *exec.Cmd
	logs      *logWatcher
	done      chan struct{} // closed when the process has exited
	err       error         // Wait's error, set before done is closed
	addr      string        // the OpenAI API, host:port
	adminAddr string        // the admin API, host:port
	stopOnce  sync.Once
	stopErr   error
}

// startGateway writes the gateway's config in dir, with extra appended,
// and starts `exe serve` on loopback ports chosen by the kernel, in front
// of teacherURL. It returns once both listeners are up and /readyz
// answers.
func startGateway(ctx context.Context, exe, dir, teacherURL string, p prices, extra string) (*gateway, error) {
	cfg := filepath.Join(dir, "understudy.yaml")
	body := fmt.Appendf(nil, gatewayConfig, model, p.input, p.output)
	if extra != "" {
		body = append(append(body, extra...), '\n')
	}
	if err := os.WriteFile(cfg, body, 0o600); err != nil {
		return nil, fmt.Errorf("writing the gateway config: %w", err)
	}
	g := &gateway{logs: newLogWatcher(logTailLines), done: make(chan struct{})}
	g.cmd = exec.Command(exe, "serve", "--config", cfg,
		"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"), "--teacher-url", teacherURL)
	g.cmd.Env = childEnv(os.Environ())
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the gateway %s: %w", exe, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.done)
	}()
	if err := g.awaitReady(ctx); err != nil {
		return nil, errors.Join(err, g.stop())
	}
	return g, nil
}

// childEnv is the environment of the gateway: the demo's own without the
// UNDERSTUDY_ settings (they would override its config), but for the ONNX
// Runtime library's location, and without OPENAI_ ones (a real API key has
// no business with the simulated teacher).
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		ours := strings.HasPrefix(kv, "UNDERSTUDY_") && !strings.HasPrefix(kv, student.EnvLibrary+"=")
		if ours || strings.HasPrefix(kv, "OPENAI_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// awaitReady waits for both listening lines and a 200 from /readyz.
func (g *gateway) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for g.addr == "" || g.adminAddr == "" {
		g.addr, g.adminAddr = g.logs.addrs()
		if err := g.pause(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + g.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := g.pause(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d, failing when ctx ends or the process exits first.
func (g *gateway) pause(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-g.done:
		return g.exitError()
	case <-ctx.Done():
		return fmt.Errorf("waiting for the gateway to start: %w\n%s", ctx.Err(), g.logs.tail())
	}
}

// exitError describes an unexpected exit of the gateway, with its last log
// lines.
func (g *gateway) exitError() error {
	return fmt.Errorf("the gateway exited unexpectedly (%v); its last log lines:\n%s", g.err, g.logs.tail())
}

// exited is closed when the gateway process has ended.
func (g *gateway) exited() <-chan struct{} { return g.done }

// stop sends SIGTERM and waits for the gateway to finish its requests and
// write its data, killing it after stopTimeout. It is safe to call twice.
func (g *gateway) stop() error {
	g.stopOnce.Do(func() { g.stopErr = g.terminate() })
	return g.stopErr
}

func (g *gateway) terminate() error {
	select {
	case <-g.done:
		return nil // already gone (an exit error is reported by exitError)
	default:
	}
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping the gateway: %w", err)
	}
	select {
	case <-g.done:
		if g.err != nil && !isSignalExit(g.err) {
			return fmt.Errorf("stopping the gateway: %w\n%s", g.err, g.logs.tail())
		}
		return nil
	case <-time.After(stopTimeout):
		_ = g.cmd.Process.Kill()
		<-g.done
		return fmt.Errorf("stopping the gateway: no exit %v after SIGTERM, killed", stopTimeout)
	}
}

// isSignalExit reports whether err is the exit of a process ended by an
// interrupt or terminate signal (the terminal's Ctrl-C reaches the child
// too).
func isSignalExit(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && (ws.Signal() == syscall.SIGINT || ws.Signal() == syscall.SIGTERM)
}

// listenRe matches the gateway's `msg="gateway listening" addr=...` and
// `msg="admin API listening" addr=...` log lines.
var listenRe = regexp.MustCompile(`msg="(gateway|admin API) listening" addr=(\S+)`)

// logWatcher receives the gateway's output: it picks out the listening
// addresses and keeps the last lines for error messages.
type logWatcher struct {
	mu        sync.Mutex
	partial   []byte
	lines     []string
	max       int
	api, adm  string
	truncated bool
}

func newLogWatcher(max int) *logWatcher { return &logWatcher{max: max} }

// Write splits p into lines; it never fails.
func (w *logWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	if len(w.partial) > 64<<10 { // a runaway line: keep it short
		w.line(string(w.partial[:1024]) + "…")
		w.partial = w.partial[:0]
	}
	return len(p), nil
}

// line records one complete line; w.mu is held.
func (w *logWatcher) line(s string) {
	if m := listenRe.FindStringSubmatch(s); m != nil {
		if m[1] == "gateway" {
			w.api = m[2]
		} else {
			w.adm = m[2]
		}
	}
	if len(w.lines) == w.max {
		w.lines = w.lines[1:]
		w.truncated = true
	}
	w.lines = append(w.lines, s)
}

// addrs returns the API and admin addresses logged so far ("" until
// logged).
func (w *logWatcher) addrs() (api, admin string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.api, w.adm
}

// tail returns the last lines logged, indented.
func (w *logWatcher) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	if w.truncated {
		b.WriteString("  …\n")
	}
	for _, l := range w.lines {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}
