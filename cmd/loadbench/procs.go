package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
)

// proc is a child server process. Its one goroutine waits for the process
// to exit; stop signals and waits for it.
type proc struct {
	name    string
	addr    string // host:port it serves on
	admin   string // host:port of a gateway's admin API
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
	stopped bool
}

// startProc starts bin with args, its output going to a log file in dir.
func startProc(name, addr, dir, bin string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, addr: addr, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopTimeout and then kills. It reports a
// process that had already died or did not exit cleanly. Calling it twice
// is safe.
func (p *proc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	if p.exited() {
		if p.waitErr != nil {
			return fmt.Errorf("%s exited early: %w%s", p.name, p.waitErr, p.logTail())
		}
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stopping %s: no exit %s after SIGTERM, killed", p.name, stopTimeout)
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) && !exit.Exited() {
		return nil // ended by our SIGTERM, or by the user's Ctrl-C
	}
	if p.waitErr != nil {
		return fmt.Errorf("stopping %s: %w%s", p.name, p.waitErr, p.logTail())
	}
	return nil
}

// logTail returns the last lines of the process's log, for error messages.
func (p *proc) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n" + p.name + " log (last lines):\n  " + strings.Join(lines, "\n  ")
}

// waitReady polls url until it answers 200, the process exits, ctx ends or
// readyTimeout passes.
func (p *proc) waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		status, _, err := fasthttp.GetTimeout(nil, url, time.Second)
		if err == nil && status == fasthttp.StatusOK {
			return nil
		}
		if p.exited() {
			p.stopped = true // reported here, not again by stop
			return fmt.Errorf("waiting for %s: it exited: %v%s", p.name, p.waitErr, p.logTail())
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d", status)
			}
			return fmt.Errorf("waiting for %s at %s: not ready after %s (last: %v)%s", p.name, url, readyTimeout, err, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// gatewayEnv is the environment of every gateway the benchmark starts.
// The background trainer is off: it would train students on the benchmark's
// own traffic and take CPU from the request path this measures.
var gatewayEnv = []string{"OPENAI_API_KEY=sk-bench", "UNDERSTUDY_LOG_LEVEL=warn", "UNDERSTUDY_TRAINER_ENABLED=false"}

// startServers starts teacher-sim on the data set and the gateway in front
// of it, with its data under dir/data, and waits until both are ready. On
// error nothing is left running.
func startServers(ctx context.Context, bin, dir, dataPath string) (sim, gw *proc, err error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, nil, err
	}
	simAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	sim, err = startProc("teacher-sim", simAddr, dir, bin, nil,
		"teacher-sim", "--listen", simAddr, "--task", "bench="+dataPath, "--latency", "0s")
	if err != nil {
		return nil, nil, err
	}
	if err := sim.waitReady(ctx, "http://"+simAddr+"/v1/models"); err != nil {
		return nil, nil, errors.Join(err, sim.stop())
	}
	gw, err = startGateway(ctx, bin, "gateway", dir, filepath.Join(dir, "data"), simAddr, nil)
	if err != nil {
		return nil, nil, errors.Join(err, sim.stop())
	}
	return sim, gw, nil
}

// startGateway starts a gateway in front of the teacher at simAddr, with
// its data under dataDir, its log in dir/name.log and env added to
// gatewayEnv, and waits until it is ready. On error it is not running.
func startGateway(ctx context.Context, bin, name, dir, dataDir, simAddr string, env []string) (*proc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	gwAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	adminAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	gw, err := startProc(name, gwAddr, dir, bin, append(slices.Clip(gatewayEnv), env...),
		"serve", "--listen", gwAddr, "--admin-listen", adminAddr,
		"--data-dir", dataDir, "--teacher-url", "http://"+simAddr+"/v1")
	if err != nil {
		return nil, err
	}
	gw.admin = adminAddr
	if err := gw.waitReady(ctx, "http://"+gwAddr+"/readyz"); err != nil {
		return nil, errors.Join(err, gw.stop())
	}
	return gw, nil
}

// freePorts asks the kernel for n free loopback ports. They are released
// before use, so another process could take one first; the server would
// then fail to start with a clear error.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// memory is a process's resident set size, current and peak, in bytes.
type memory struct {
	RSS  int64 `json:"rss_bytes"`
	Peak int64 `json:"peak_rss_bytes"`
	// Anon and File split RSS: anonymous memory (the Go heap, C's malloc,
	// ONNX Runtime) and mapped files (Badger's tables and value log).
	Anon int64 `json:"rss_anon_bytes,omitempty"`
	File int64 `json:"rss_file_bytes,omitempty"`
}

// readMemory reads VmRSS and VmHWM from /proc/PID/status (Linux only).
func readMemory(pid int) (memory, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	var m memory
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		}
		if !ok || dst == nil {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "kB")), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("reading memory of pid %d: parsing %s: %w", pid, key, err)
		}
		*dst = kb << 10
	}
	return m, nil
}

// resetPeak resets the process's VmHWM to its current RSS (Linux 4.0+), so
// that the next reading is the peak of one phase.
func resetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// residentByKind sums a process's resident memory by what is mapped:
// Badger's files by extension (.vlog, .sst, .mem), other files by name,
// and anonymous memory; from /proc/PID/smaps (Linux only). Largest first,
// as "kind size" strings.
func residentByKind(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return nil, fmt.Errorf("reading smaps of pid %d: %w", pid, err)
	}
	sums := map[string]int64{}
	kind := "anon"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			kind = "anon"
			if len(f) >= 6 {
				name := filepath.Base(f[5])
				if ext := filepath.Ext(name); ext == ".vlog" || ext == ".sst" || ext == ".mem" {
					name = "*" + ext
				}
				kind = name
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			sums[kind] += kb << 10
		}
	}
	kinds := make([]string, 0, len(sums))
	for k := range sums {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Compare(sums[b], sums[a]) })
	out := make([]string, 0, len(kinds))
	for _, k := range kinds {
		if sums[k] >= 1<<20 {
			out = append(out, k+" "+fmtBytes(sums[k]))
		}
	}
	return out, nil
}
