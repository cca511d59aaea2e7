package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/valyala/fasthttp"
)

// The backend comparison (-backend-compare): the gateway's pair log on
// Badger (the default) and on NATS JetStream, at -backend-rate
// non-streaming, each run on a fresh gateway process (a fresh data
// directory, or a fresh stream prefix on the one nats-server), the two
// interleaved over -repeat, badger first in odd repeats.
//
// nats-server runs in a child process: loadbench re-executes itself with
// natsServerEnv set, and that child runs github.com/nats-io/nats-server/v2
// in-process with JetStream on a file store under the bench's temporary
// directory and nothing else. Its CPU (utime + stime from /proc) is then
// measured like the gateway's, over the measured requests of each run, so
// no subtraction of the load generator's CPU is needed. It is measured in
// badger runs too, where it should be idle.
//
// Per run: client p50/p99, the overhead histogram's p50/p99, the gateway's
// and nats-server's CPU per measured request, the pairs logged and dropped
// once the writer's queue had drained, and the pairs per second the log
// sustained (pairs logged over the time from the load's start to the
// queue's drain). Then, with -backend-flatout-rate > 0, one short phase per
// backend at that rate, for the pairs per second the log takes when the
// gateway is driven harder than the 2,000 req/s goal.

// natsServerEnv, in loadbench's environment, makes it run nats-server
// instead: "port,monitorPort,storeDir".
const natsServerEnv = "LOADBENCH_NATS_SERVER"

const (
	backendBadger = "badger"
	backendNATS   = "nats"
)

// backendRun is one run of the backend comparison.
type backendRun struct {
	Repeat  int    `json:"repeat"` // 0 for the flat-out phase
	Backend string `json:"backend"`
	Rate    int    `json:"rate"`
	loadResult
	Overhead *overhead `json:"overhead"`
	// CPU per measured request, µs.
	GatewayCPU float64 `json:"gateway_cpu_us_per_request"`
	NATSCPU    float64 `json:"nats_cpu_us_per_request"`
	Requests   int64   `json:"requests"`
	// Pairs logged and dropped during the load, once the queue drained.
	pairCounts
	// PairsPerSec is PairsLogged over the time from the load's start
	// (warmup included) to the queue's drain.
	PairsPerSec float64 `json:"pairs_per_second"`
}

// runNATSServer runs nats-server with JetStream until SIGTERM or SIGINT;
// spec is natsServerEnv's value.
func runNATSServer(spec string) error {
	port, mport, dir, err := parseNATSSpec(spec)
	if err != nil {
		return err
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, HTTPHost: "127.0.0.1", HTTPPort: mport,
		JetStream: true, StoreDir: dir, JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 8 << 30, NoLog: true, NoSigs: true})
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("nats-server not ready after 10s")
	}
	<-sig
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// parseNATSSpec splits natsServerEnv's value, "port,monitorPort,storeDir"
// (the directory may hold commas).
func parseNATSSpec(spec string) (port, mport int, dir string, err error) {
	f := strings.SplitN(spec, ",", 3)
	if len(f) == 3 {
		port, err = strconv.Atoi(f[0])
		if err == nil {
			mport, err = strconv.Atoi(f[1])
		}
		dir = f[2]
	}
	if len(f) != 3 || err != nil || port <= 0 || mport <= 0 || dir == "" {
		return 0, 0, "", fmt.Errorf("%s=%q: want port,monitorPort,storeDir", natsServerEnv, spec)
	}
	return port, mport, dir, nil
}

// startNATS starts nats-server in a child loadbench and waits until its
// monitor answers /healthz.
func startNATS(ctx context.Context, dir string) (p *proc, url string, err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	store := filepath.Join(dir, "jetstream")
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	p, err = startProc("nats-server", addr, dir, self,
		[]string{fmt.Sprintf("%s=%d,%d,%s", natsServerEnv, ports[0], ports[1], store)})
	if err != nil {
		return nil, "", err
	}
	if err := p.waitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/healthz"); err != nil {
		return nil, "", errors.Join(err, p.stop())
	}
	return p, "nats://" + addr, nil
}

// runBackendCompare runs the backend comparison alone and writes its report.
func runBackendCompare(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	dir, err := workDir(o, "loadbench-backend-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ds, err := writeDataset(dir, o.examples, o.bodyBytes)
	if err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	simAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	sim, err := startProc("teacher-sim", simAddr, dir, o.bin, nil,
		"teacher-sim", "--listen", simAddr, "--task", "bench="+ds.path, "--latency", "0s")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sim.stop()) }()
	if err := sim.waitReady(ctx, "http://"+simAddr+"/v1/models"); err != nil {
		return err
	}
	ns, natsURL, err := startNATS(ctx, dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ns.stop()) }()

	b := &bench{o: o, ds: ds, dir: dir, sim: sim, stderr: stderr, res: &results{Conditions: currentConditions(o)},
		ctl: &fasthttp.Client{ReadTimeout: requestTimeout, WriteTimeout: requestTimeout}}
	defer b.ctl.CloseIdleConnections()
	var runs []backendRun
	n, total := 0, 2*o.repeat
	for r := range o.repeat {
		order := []string{backendBadger, backendNATS}
		if r%2 == 1 {
			order = []string{backendNATS, backendBadger}
		}
		for _, be := range order {
			n++
			br, err := b.runBackend(ctx, ns, natsURL, r+1, be, o.backendRate, o.duration)
			if err != nil {
				return fmt.Errorf("backend comparison, %s (repeat %d): %w", be, r+1, err)
			}
			runs = append(runs, br)
			backendProgress(stderr, fmt.Sprintf("%d/%d", n, total), br)
		}
	}
	if o.backendFlatout > 0 {
		// Twice per backend, badger nats nats badger, so that neither
		// has the first or the last place alone.
		for _, be := range []string{backendBadger, backendNATS, backendNATS, backendBadger} {
			br, err := b.runBackend(ctx, ns, natsURL, 0, be, o.backendFlatout, backendFlatoutFor)
			if err != nil {
				return fmt.Errorf("backend comparison, %s flat-out: %w", be, err)
			}
			runs = append(runs, br)
			backendProgress(stderr, "flat-out", br)
		}
	}
	writeBackend(stdout, b.res.Conditions, o, runs)
	return nil
}

// backendFlatoutFor is the measured time of a flat-out phase.
const backendFlatoutFor = 5 * time.Second

// runBackend starts a gateway on backend, loads it at rate for duration
// (after -warmup) and stops it.
func (b *bench) runBackend(ctx context.Context, ns *proc, natsURL string, repeat int, backend string, rate int, duration time.Duration) (br backendRun, err error) {
	br = backendRun{Repeat: repeat, Backend: backend, Rate: rate}
	name := fmt.Sprintf("gateway-%s-%d-%d", backend, repeat, rate)
	dataDir, err := os.MkdirTemp(b.dir, name+"-data-")
	if err != nil {
		return br, fmt.Errorf("creating a data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	env := []string{loggingOnEnv}
	if backend == backendNATS {
		env = append(env, "UNDERSTUDY_STORAGE_BACKEND=nats", "UNDERSTUDY_STORAGE_NATS_URL="+natsURL,
			"UNDERSTUDY_STORAGE_NATS_PREFIX="+fmt.Sprintf("bench%d_%d", repeat, rate))
	}
	gw, err := b.startChecked(ctx, name, dataDir, env)
	if err != nil {
		return br, err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()
	client := newClient(gw.addr, b.o.conns)
	defer client.CloseIdleConnections()
	url := "http://" + gw.addr + "/v1/chat/completions"
	before, _, err := b.waitDrained(ctx, gw.addr, 1)
	if err != nil {
		return br, err
	}
	started := time.Now()
	l := startLoad(ctx, client, url, b.ds.bodies, b.ds.want, rate, b.o.warmup, duration, b.o.conns)
	select {
	case <-time.After(time.Until(l.measureStart())):
	case <-ctx.Done():
	}
	gw0, err0 := readCPU(gw.pid())
	ns0, err1 := readCPU(ns.pid())
	if err := errors.Join(err0, err1); err != nil {
		_, _ = l.wait(ctx)
		return br, err
	}
	if br.loadResult, br.Overhead, err = b.waitOverhead(ctx, l, gw.addr); err != nil {
		return br, err
	}
	gw1, err0 := readCPU(gw.pid())
	ns1, err1 := readCPU(ns.pid())
	if err := errors.Join(err0, err1); err != nil {
		return br, err
	}
	if n := float64(br.Sent); n > 0 {
		br.GatewayCPU = (gw1 - gw0).Seconds() / n * 1e6
		br.NATSCPU = (ns1 - ns0).Seconds() / n * 1e6
	}
	br.Requests = l.total
	after, drained, err := b.waitDrained(ctx, gw.addr, before.total()+float64(l.total))
	if err != nil {
		return br, err
	}
	br.between(before, after, drained)
	br.PairsPerSec = br.PairsLogged / time.Since(started).Seconds()
	return br, nil
}

func backendProgress(w io.Writer, tag string, br backendRun) {
	line := fmt.Sprintf("[backend %s] repeat %d chat %5d req/s %-6s: %5.0f req/s, p50 %s, p99 %s, errors %d, overhead p50 %s p99 %s, gateway CPU %.0f µs/req, nats-server CPU %.0f µs/req, pairs logged %.0f of %d requests, dropped %.0f, %.0f pairs/s",
		tag, br.Repeat, br.Rate, br.Backend, br.Throughput, fmtUS(br.Latency.P50), fmtUS(br.Latency.P99), br.errors(),
		fmtUS(float64(br.Overhead.P50)), fmtUS(float64(br.Overhead.P99)), br.GatewayCPU, br.NATSCPU,
		br.PairsLogged, br.Requests, br.dropped(), br.PairsPerSec)
	if !br.Drained {
		line += fmt.Sprintf(" (queue not drained after %s)", drainTimeout)
	}
	if br.FirstError != "" {
		line += "\n    first error: " + br.FirstError
	}
	fmt.Fprintln(w, line)
}

// ratio is a/b, or NaN when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

// fmtRatio formats a ratio as "1.23×", or "n/a".
func fmtRatio(r float64) string {
	if r != r {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", r)
}

// writeBackend reports the medians over the repeats, the ratios nats /
// badger, and the flat-out phases.
func writeBackend(w io.Writer, c conditions, o options, runs []backendRun) {
	c.Stream = false // this comparison has no streaming phase
	writeConditions(w, c)
	var measured, flat []backendRun
	for _, r := range runs {
		if r.Repeat > 0 {
			measured = append(measured, r)
		} else {
			flat = append(flat, r)
		}
	}
	by := byMode(measured, func(r backendRun) string { return r.Backend })
	fmt.Fprintf(w, "\n### Pair log backend at %d req/s non-streaming (median of %d, range in brackets)\n\n", o.backendRate, o.repeat)
	fmt.Fprintln(w, "No direct target here: every run goes through a fresh gateway, the backends interleaved; nats-server (JetStream, file store) in its own process on the same machine. CPU: utime + stime over the measured requests, per request. Pairs/s: pairs logged from the load's start to the queue's drain.")
	fmt.Fprintln(w)
	cols := []struct {
		name string
		f    func(backendRun) float64
		us   bool
		// noRatio: badger's value is idle noise, not a base.
		noRatio bool
	}{
		{"client p50", func(r backendRun) float64 { return r.Latency.P50 }, true, false},
		{"client p99", func(r backendRun) float64 { return r.Latency.P99 }, true, false},
		{"overhead p50", func(r backendRun) float64 { return float64(r.Overhead.P50) }, true, false},
		{"overhead p99", func(r backendRun) float64 { return float64(r.Overhead.P99) }, true, false},
		{"gateway CPU µs/req", func(r backendRun) float64 { return r.GatewayCPU }, false, false},
		{"nats-server CPU µs/req", func(r backendRun) float64 { return r.NATSCPU }, false, true},
		{"gateway + nats-server CPU µs/req", func(r backendRun) float64 { return r.GatewayCPU + r.NATSCPU }, false, false},
		{"pairs logged", func(r backendRun) float64 { return r.PairsLogged }, false, false},
		{"pairs dropped", func(r backendRun) float64 { return r.dropped() }, false, false},
		{"pairs/s", func(r backendRun) float64 { return r.PairsPerSec }, false, false},
		{"req/s achieved", func(r backendRun) float64 { return r.Throughput }, false, false},
		{"errors", func(r backendRun) float64 { return float64(r.errors()) }, false, false},
	}
	fmtV := func(v float64, us bool) string {
		if us {
			return fmtUS(v)
		}
		return fmt.Sprintf("%.0f", v)
	}
	fmt.Fprintln(w, "| | badger | nats | nats / badger |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	bd, nt := by[backendBadger], by[backendNATS]
	for _, col := range cols {
		if len(bd) == 0 || len(nt) == 0 {
			break
		}
		mb, mn := medianOf(bd, col.f), medianOf(nt, col.f)
		rb, rn := "", ""
		if len(bd) > 1 {
			rb = " (" + rangeOf(bd, col.f, col.us) + ")"
			rn = " (" + rangeOf(nt, col.f, col.us) + ")"
		}
		rat := fmtRatio(ratio(mn, mb))
		if col.noRatio {
			rat = "–"
		}
		fmt.Fprintf(w, "| %s | %s%s | %s%s | %s |\n", col.name, fmtV(mb, col.us), rb, fmtV(mn, col.us), rn, rat)
	}
	if len(flat) > 0 {
		fmt.Fprintf(w, "\nFlat-out (%d req/s offered for %s after %s warmup; twice per backend, in the order run; no pairs dropped means the log kept up with what the gateway served):\n\n", o.backendFlatout, backendFlatoutFor, o.warmup)
		fmt.Fprintln(w, "| backend | req/s achieved | client p99 | pairs logged | dropped | pairs/s | gateway CPU µs/req | nats-server CPU µs/req | errors |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, r := range flat {
			fmt.Fprintf(w, "| %s | %.0f | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %d |\n", r.Backend, r.Throughput, fmtUS(r.Latency.P99),
				r.PairsLogged, r.dropped(), r.PairsPerSec, r.GatewayCPU, r.NATSCPU, r.errors())
		}
	}
}

// rangeOf is the smallest and largest of f over rs, as µs when us is set,
// else as whole numbers.
func rangeOf(rs []backendRun, f func(backendRun) float64, us bool) string {
	if us {
		return fmtRange(rs, f)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rs {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	return fmt.Sprintf("%.0f–%.0f", lo, hi)
}
