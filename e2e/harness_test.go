package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that the tests leave no goroutine behind (the waits on
// their child processes included) and removes the binary they built, also
// when a test fails. Binaries an earlier run could not remove (killed, or
// timed out outside `go test`) are removed first.
func TestMain(m *testing.M) {
	removeStaleBinaries()
	goleak.VerifyTestMain(idleClosing{m}, goleak.Cleanup(func(code int) {
		if binary.remove != "" {
			_ = os.RemoveAll(binary.remove)
		}
		os.Exit(code)
	}))
}

// idleClosing runs the tests, then closes the idle keep-alive connections
// of the test clients (http.Get and the openai-go SDK both use
// http.DefaultTransport), whose goroutines would otherwise count as leaks.
type idleClosing struct{ m *testing.M }

func (c idleClosing) Run() int {
	code := c.m.Run()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	return code
}

// binary is the understudy binary, built once from cmd/understudy by
// buildBinary; remove is what TestMain removes.
var binary struct {
	once         sync.Once
	path, remove string
	err          error
}

// mainPackage is what buildBinary builds: by import path, so that it works
// from any directory inside the module.
const mainPackage = "github.com/understudy-dev/understudy/cmd/understudy"

// binaryPrefix names the directory buildBinary makes outside `go test`'s
// work directory: understudy-e2e-PID-*, PID the test process's.
const binaryPrefix = "understudy-e2e-"

func buildBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		dir, remove := goWorkDir(), ""
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", fmt.Sprintf("%s%d-", binaryPrefix, os.Getpid())); err != nil {
				binary.err = err
				return
			}
			remove = dir
		}
		binary.path = filepath.Join(dir, "understudy")
		if remove == "" {
			remove = binary.path
		}
		binary.remove = remove
		out, err := exec.Command("go", "build", "-o", binary.path, mainPackage).CombinedOutput()
		if err != nil {
			binary.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// natsServerModule is the nats-server this repository requires (go.mod).
const natsServerModule = "github.com/nats-io/nats-server/v2"

var natsBinary struct {
	once sync.Once
	path string
	err  error
}

// natsServerBinary builds nats-server beside the understudy binary, once,
// for tests that run it as a process of its own (to kill it).
func natsServerBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(buildBinary(t))
	natsBinary.once.Do(func() {
		natsBinary.path = filepath.Join(dir, "nats-server")
		if out, err := exec.Command("go", "build", "-o", natsBinary.path, natsServerModule).CombinedOutput(); err != nil {
			natsBinary.err = fmt.Errorf("go build %s: %v\n%s", natsServerModule, err, out)
		}
	})
	if natsBinary.err != nil {
		t.Fatal(natsBinary.err)
	}
	return natsBinary.path
}

// goWorkDir returns the directory of the test binary when `go test` built
// it into its work directory ($TMPDIR/go-build*/b*), which the go command
// removes when the run ends, however it ends: a failure, -timeout, ^C. A
// binary built there cannot outlive the run. Else "".
func goWorkDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	dir := filepath.Dir(exe)
	if !strings.HasPrefix(filepath.Base(filepath.Dir(dir)), "go-build") || !regexp.MustCompile(`^b\d+$`).MatchString(filepath.Base(dir)) {
		return ""
	}
	return dir
}

// removeStaleBinaries removes the directories buildBinary made for test
// processes that are gone.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), binaryPrefix+"*-*"))
	for _, d := range dirs {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), binaryPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		p, err := os.FindProcess(pid)
		if err == nil {
			err = p.Signal(syscall.Signal(0))
		}
		if errors.Is(err, os.ErrProcessDone) {
			_ = os.RemoveAll(d)
		}
	}
}

// child is a running understudy process.
type child struct {
	cmd  *exec.Cmd
	mu   *sync.Mutex // guards logs
	logs *strings.Builder
	done chan error
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(buildBinary(t), args...), mu: &sync.Mutex{}, logs: &strings.Builder{}, done: make(chan error, 1)}
	w := &lockedWriter{mu: c.mu, b: c.logs}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	c.cmd.Env = append(os.Environ(), "UNDERSTUDY_LOG_LEVEL=info", "OPENAI_API_KEY=sk-test")
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			c.mu.Lock()
			t.Logf("%s logs:\n%s", args[0], c.logs.String())
			c.mu.Unlock()
		}
	})
	return c
}

// listening waits for the child's log line `msg="<what> listening"` and
// returns the address it logged. Children listen on port 0, so parallel
// test packages cannot race for a port.
func (c *child) listening(t *testing.T, what string) string {
	t.Helper()
	re := regexp.MustCompile(`msg="` + what + ` listening" addr=(\S+)`)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		c.mu.Lock()
		m := re.FindStringSubmatch(c.logs.String())
		c.mu.Unlock()
		if m != nil {
			return m[1]
		}
	}
	t.Fatalf("no %q listening line in 15s", what)
	return ""
}

// stop sends sig and waits for the process to end.
func (c *child) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
		c.done <- nil // for Cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("process did not stop after %v", sig)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// spamData returns the path of a SpamAssassin task file, which
// scripts/fetch-spamassassin.sh (run by make test) puts in .cache.
func spamData(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", ".cache", "data", "spamassassin", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run scripts/fetch-spamassassin.sh (make test does)", p)
	}
	return p
}

type labelled struct {
	Text  string `json:"text"`
	Label string `json:"label"`
}

// cycle hands out a corpus in order, starting over at its end.
type cycle struct {
	all  []labelled
	sent int // how many were handed out
}

// take returns the next n.
func (c *cycle) take(n int) []labelled {
	out := make([]labelled, n)
	for i := range out {
		out[i] = c.all[(c.sent+i)%len(c.all)]
	}
	c.sent += n
	return out
}

// readLabelled reads n lines spread evenly over a task file (whose lines
// are grouped by label).
func readLabelled(t *testing.T, path string, n int) []labelled {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var all []labelled
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l labelled
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		all = append(all, l)
	}
	if n >= len(all) {
		return all
	}
	out := make([]labelled, n)
	for i := range out {
		out[i] = all[i*len(all)/n]
	}
	return out
}

// domainView is what the tests read of the admin API's domain view.
type domainView struct {
	Name            string            `json:"name"`
	State           string            `json:"state"`
	Pairs           int64             `json:"pairs"`
	LatestVersion   int               `json:"latest_version"`
	OpenEndedReason string            `json:"open_ended_reason"`
	Versions        []json.RawMessage `json:"versions"`
}

func getDomain(t *testing.T, adminAddr, name string) (domainView, int) {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/admin/domains/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v domainView
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v, resp.StatusCode
}

// inParallel calls fn(i) for every i in [0, n), at most limit at a time,
// and returns when all have returned.
func inParallel(n, limit int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}
