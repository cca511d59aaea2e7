package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The cost comparison (-cost): what one request costs the gateway in CPU
// and memory, as ratios to what it costs the teacher behind it, all in one
// run. One teacher-sim on a learnable data set, one gateway in front of it
// with the trainer on and a trained student, and per repeat, in rotating
// order, at -cost-rate non-streaming:
//
//   - direct: the load straight to teacher-sim: its own CPU per request
//     and the client's latency floor;
//   - relayed: through the gateway, the domain pinned to the teacher: the
//     gateway's CPU per request against the teacher's in the same phase;
//   - student: the domain pinned to the student, which answers every
//     request: the gateway's CPU per answer and the client's latency.
//
// CPU is utime + stime from /proc/PID/stat over the measured requests,
// divided by their number; memory is the gateway's VmHWM, reset before each
// phase, and the highest VmRSS sampled every 50 ms. Then the training
// phase: relayed load at -cost-train-rate while the domain trains a student
// on its newest pairs (POST /admin/domains/{name}/train, default
// max_train_pairs): the gateway's peak RSS and the client's p99 over the
// requests scheduled while it trained. Last, with -pprof DIR, one unmeasured
// relayed and one student phase, each with a CPU profile over the phase and
// heap profiles after it, from the admin listener's /debug/pprof.

// Modes of the cost comparison (direct is modeDirect).
const (
	costRelayed  = "relayed"
	costStudent  = "student"
	costTraining = "training"
	// costSampleEvery is how often VmRSS is sampled.
	costSampleEvery = 50 * time.Millisecond
)

// costEnv: the trainer on, with its default max_train_pairs, training the
// first student on the first pairs and afterwards only when asked; the
// gate never promotes by itself (the runs pin the domain instead).
var costEnv = []string{
	"UNDERSTUDY_TRAINER_ENABLED=true",
	"UNDERSTUDY_TRAINER_RETRAIN_EVERY=1000000000",
	"UNDERSTUDY_ROUTER_MIN_SAMPLES=1000000000",
}

// costRun is one phase of the cost comparison.
type costRun struct {
	Repeat int    `json:"repeat"`
	Mode   string `json:"mode"`
	Rate   int    `json:"rate"`
	loadResult
	// CPU per measured request, µs: the gateway's (not in direct runs) and
	// teacher-sim's (not in student runs, where it gets no requests).
	GatewayCPU float64 `json:"gateway_cpu_us_per_request"`
	SimCPU     float64 `json:"sim_cpu_us_per_request"`
	// PeakRSS is the gateway's peak over the phase: VmHWM after a reset,
	// or the highest VmRSS sampled when the reset is not allowed.
	PeakRSS int64 `json:"gateway_peak_rss_bytes"`
	// PeakAnon and PeakFile split the highest RSS sampled (memory).
	PeakAnon int64 `json:"gateway_peak_sample_anon_bytes"`
	PeakFile int64 `json:"gateway_peak_sample_file_bytes"`
	// Training runs: how long the student took to train, and whether it
	// finished within trainTimeout.
	TrainSeconds float64 `json:"train_seconds,omitempty"`
	Trained      bool    `json:"trained,omitempty"`
	// GoHeap and GoHeld are the gateway's Go heap in use and what the Go
	// runtime holds from the OS (mapped, not released) at the phase's end,
	// from its go_memstats metrics; the rest of its anonymous RSS is C's
	// (ONNX Runtime) and Badger's off-heap tables.
	GoHeap int64 `json:"gateway_go_heap_inuse_bytes,omitempty"`
	GoHeld int64 `json:"gateway_go_held_bytes,omitempty"`
	// Resident is the gateway's RSS by mapping at the phase's end
	// (residentByKind).
	Resident []string `json:"gateway_resident,omitempty"`
}

// goMemory reads the gateway's Go heap in use and what its runtime holds
// from the OS (go_memstats_sys_bytes less the heap it released).
func (b *bench) goMemory(addr string) (inuse, held int64, err error) {
	body, err := b.scrape(addr)
	if err != nil {
		return 0, 0, err
	}
	read := func(name string) float64 {
		v, perr := parseSamples(body, name)
		err = errors.Join(err, perr)
		return v[""]
	}
	inuse = int64(read("go_memstats_heap_inuse_bytes"))
	held = int64(read("go_memstats_sys_bytes") - read("go_memstats_heap_released_bytes"))
	return inuse, held, err
}

// runCost runs the cost comparison alone and writes its report.
func runCost(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	dir, err := workDir(o, "loadbench-cost-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim, ds, err := startTriageSim(ctx, o, dir, "teacher-sim")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sim.stop()) }()
	simAddr := sim.addr
	gw, err := startGateway(ctx, o.bin, "gateway", dir, filepath.Join(dir, "data"), simAddr, costEnv)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()

	b := &bench{o: o, dir: dir, stderr: stderr, res: &results{Conditions: currentConditions(o)},
		ctl: &fasthttp.Client{ReadTimeout: time.Minute, WriteTimeout: requestTimeout}}
	defer b.ctl.CloseIdleConnections()
	gwClient, simClient := newClient(gw.addr, o.conns), newClient(simAddr, o.conns)
	defer gwClient.CloseIdleConnections()
	defer simClient.CloseIdleConnections()
	gwURL, simURL := "http://"+gw.addr+"/v1/chat/completions", "http://"+simAddr+"/v1/chat/completions"

	fmt.Fprintf(stderr, "cost: %d requests to train a first student, then waiting for it...\n", studentPairs)
	domain, err := b.trainFirst(ctx, gw, gwURL, ds)
	if err != nil {
		return err
	}
	if err := b.costFill(ctx, gw, gwClient, gwURL, ds, domain); err != nil {
		return err
	}
	pinned := ""
	pin := func(action string) error {
		if pinned == action {
			return nil
		}
		pinned = action
		return b.act(gw, domain, action)
	}
	phase := func(repeat int, mode string, rate int, profile string) (costRun, error) {
		cr := costRun{Repeat: repeat, Mode: mode, Rate: rate}
		client, url := gwClient, gwURL
		var err error
		switch mode {
		case modeDirect:
			client, url = simClient, simURL
		case costStudent:
			err = pin("pin-student")
		default:
			err = pin("pin-teacher")
		}
		if err != nil {
			return cr, err
		}
		return b.costPhase(ctx, cr, gw, sim, client, url, ds, domain, profile)
	}
	var runs []costRun
	for r := range o.repeat {
		order := []string{modeDirect, costRelayed, costStudent}
		for range r % 3 { // rotate: each mode goes first once in three
			order = append(order[1:], order[0])
		}
		for _, m := range order {
			cr, err := phase(r+1, m, o.costRate, "")
			if err != nil {
				return fmt.Errorf("cost comparison, %s (repeat %d): %w", m, r+1, err)
			}
			runs = append(runs, cr)
			costProgress(stderr, cr)
		}
	}
	cr, err := phase(1, costTraining, o.costTrainRate, "")
	if err != nil {
		return fmt.Errorf("cost comparison, training: %w", err)
	}
	runs = append(runs, cr)
	costProgress(stderr, cr)
	if o.pprofDir != "" {
		for _, m := range []string{costRelayed, costStudent} {
			cr, err := phase(0, m, o.costRate, m)
			if err != nil {
				return fmt.Errorf("cost comparison, profiling %s: %w", m, err)
			}
			costProgress(stderr, cr)
		}
		fmt.Fprintf(stderr, "cost: profiles in %s (go tool pprof -top %s %s)\n", o.pprofDir, o.bin, filepath.Join(o.pprofDir, "cpu-relayed.pb.gz"))
	}
	if o.jsonPath != "" {
		data, err := json.MarshalIndent(struct {
			Conditions conditions `json:"conditions"`
			Cost       []costRun  `json:"cost"`
		}{b.res.Conditions, runs}, "", "  ")
		if err == nil {
			err = os.WriteFile(o.jsonPath, append(data, '\n'), 0o644)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", o.jsonPath, err)
		}
	}
	writeCost(stdout, b.res.Conditions, o, runs)
	return nil
}

// costFill logs max_train_pairs and more, so that the phases run on a
// pair log of full size and the training phase trains on as many pairs as
// a busy domain does, then waits until the trainer has caught up: a domain
// retrains whenever its pairs double, up to max_train_pairs, and those runs
// would otherwise fall into the measured phases. Caught up is idle: no
// load is sent, so a gateway that spends under 5% of a core for
// costIdleFor is not training (the scheduler starts a due run within its
// 1 s interval).
func (b *bench) costFill(ctx context.Context, gw *proc, client *fasthttp.HostClient, url string, ds *dataset, domain string) error {
	rate := b.o.costRate
	fill := time.Duration(costFillPairs) * time.Second / time.Duration(rate)
	fmt.Fprintf(b.stderr, "cost: logging %d pairs at %d req/s, then waiting until the gateway is idle for %s...\n", costFillPairs, rate, costIdleFor)
	l := startLoad(ctx, client, url, ds.bodies, ds.want, rate, 0, fill, b.o.conns)
	if _, err := l.wait(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * trainTimeout)
	idleSince := time.Now()
	last, err := readCPU(gw.pid())
	for err == nil && time.Since(idleSince) < costIdleFor {
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway did not go idle within %s after the fill", 2*trainTimeout)
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		var now time.Duration
		if now, err = readCPU(gw.pid()); err == nil && now-last > 50*time.Millisecond {
			idleSince = time.Now()
		}
		last = now
	}
	if err != nil {
		return err
	}
	v, err := b.latestVersion(gw, domain)
	if err == nil {
		fmt.Fprintf(b.stderr, "cost: %s at version %d\n", domain, v)
	}
	return err
}

// costIdleFor is how long costFill wants the gateway idle.
const costIdleFor = 4 * time.Second

// costFillPairs is how many pairs costFill logs: more than the trainer's
// default max_train_pairs (20,000), so that the last doubling is behind.
const costFillPairs = 24000

// costPhase runs one load and measures both processes over its measured
// requests. A training phase asks the gateway to train at the start of the
// measured requests and ends the load 2 s after the student is stored. With
// profile set, it writes a CPU profile of the measured requests and heap
// profiles after them to -pprof DIR, named after profile.
func (b *bench) costPhase(ctx context.Context, cr costRun, gw, sim *proc, client *fasthttp.HostClient, url string,
	ds *dataset, domain, profile string) (costRun, error) {
	duration := b.o.duration
	if cr.Mode == costTraining {
		duration = trainTimeout
	}
	reset := resetPeak(gw.pid()) == nil
	var peak rssPeak
	stopSampling := peak.sample(gw.pid())
	l := startLoad(ctx, client, url, ds.bodies, ds.want, cr.Rate, b.o.warmup, duration, b.o.conns)
	select {
	case <-time.After(time.Until(l.measureStart())):
	case <-ctx.Done():
	}
	gw0, err0 := readCPU(gw.pid())
	sim0, err1 := readCPU(sim.pid())
	if err := errors.Join(err0, err1); err != nil {
		stopSampling()
		_, _ = l.wait(ctx)
		return cr, err
	}
	var profErr error
	var profWG sync.WaitGroup
	if profile != "" {
		profWG.Add(1)
		go func() {
			defer profWG.Done()
			secs := max(1, int(b.o.duration.Seconds())-1)
			profErr = b.fetchProfile(gw, "profile?seconds="+strconv.Itoa(secs), "cpu-"+profile+".pb.gz")
		}()
	}
	if cr.Mode == costTraining {
		before, err := b.latestVersion(gw, domain)
		if err == nil {
			err = b.act(gw, domain, "train")
		}
		began := time.Now()
		for err == nil && time.Since(began) < trainTimeout-5*time.Second {
			var v int
			if v, err = b.latestVersion(gw, domain); err == nil && v > before {
				cr.Trained = true
				break
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		ended := time.Now()
		cr.TrainSeconds = ended.Sub(began).Seconds()
		l.setWindow(began, ended)
		l.stopAt(ended.Add(2 * time.Second))
		if err != nil {
			stopSampling()
			_, _ = l.wait(ctx)
			return cr, err
		}
	}
	res, err := l.wait(ctx)
	gw1, err0 := readCPU(gw.pid())
	sim1, err1 := readCPU(sim.pid())
	stopSampling()
	profWG.Wait()
	if err := errors.Join(err, err0, err1, profErr); err != nil {
		return cr, err
	}
	if profile != "" {
		for _, p := range []string{"heap", "allocs"} {
			if err := b.fetchProfile(gw, p, p+"-"+profile+".pb.gz"); err != nil {
				return cr, err
			}
		}
	}
	cr.loadResult = res
	if n := float64(res.Sent); n > 0 {
		if cr.Mode != modeDirect {
			cr.GatewayCPU = (gw1 - gw0).Seconds() / n * 1e6
		}
		if cr.Mode != costStudent {
			cr.SimCPU = (sim1 - sim0).Seconds() / n * 1e6
		}
	}
	if cr.GoHeap, cr.GoHeld, err = b.goMemory(gw.addr); err != nil {
		return cr, err
	}
	if kinds, err := residentByKind(gw.pid()); err == nil {
		cr.Resident = kinds
	}
	pk := peak.max()
	cr.PeakRSS, cr.PeakAnon, cr.PeakFile = pk.RSS, pk.Anon, pk.File
	if m, err := readMemory(gw.pid()); err == nil && reset {
		cr.PeakRSS = max(cr.PeakRSS, m.Peak)
	}
	return cr, nil
}

// rssPeak is the highest VmRSS sampled.
type rssPeak struct {
	mu   sync.Mutex
	peak memory // the sample with the highest RSS
}

// sample reads pid's VmRSS every costSampleEvery until the returned stop
// is called.
func (p *rssPeak) sample(pid int) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(costSampleEvery)
		defer t.Stop()
		for {
			if m, err := readMemory(pid); err == nil {
				p.mu.Lock()
				if m.RSS > p.peak.RSS {
					p.peak = m
				}
				p.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (p *rssPeak) max() memory {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// latestVersion is the newest student version of domain.
func (b *bench) latestVersion(gw *proc, domain string) (int, error) {
	url := "http://" + gw.admin + "/admin/domains/" + domain
	status, body, err := b.ctl.GetTimeout(nil, url, requestTimeout)
	if err == nil && status != fasthttp.StatusOK {
		err = fmt.Errorf("status %d: %.200s", status, body)
	}
	var d struct {
		Latest int `json:"latest_version"`
	}
	if err == nil {
		err = json.Unmarshal(body, &d)
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", url, err)
	}
	return d.Latest, nil
}

// fetchProfile saves the admin listener's /debug/pprof/<name> to -pprof DIR.
func (b *bench) fetchProfile(gw *proc, name, file string) error {
	url := "http://" + gw.admin + "/debug/pprof/" + name
	status, body, err := b.ctl.GetTimeout(nil, url, time.Minute)
	if err == nil && status != fasthttp.StatusOK {
		err = fmt.Errorf("status %d: %.200s", status, body)
	}
	if err == nil {
		if err = os.MkdirAll(b.o.pprofDir, 0o755); err == nil {
			err = os.WriteFile(filepath.Join(b.o.pprofDir, file), body, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	return nil
}

func costProgress(w io.Writer, cr costRun) {
	rep := "profile"
	if cr.Repeat > 0 {
		rep = "repeat " + strconv.Itoa(cr.Repeat)
	}
	line := fmt.Sprintf("cost: %s %-8s %5d req/s: %5.0f req/s, p50 %s, p99 %s, errors %d, gateway CPU %.0f µs/req, teacher-sim CPU %.0f µs/req, gateway peak RSS %s (sampled %s anon, %s file)",
		rep, cr.Mode, cr.Rate, cr.Throughput, fmtUS(cr.Latency.P50), fmtUS(cr.Latency.P99), cr.errors(), cr.GatewayCPU, cr.SimCPU,
		fmtBytes(cr.PeakRSS), fmtBytes(cr.PeakAnon), fmtBytes(cr.PeakFile))
	line += fmt.Sprintf("; at the end Go heap %s in use, %s held by the Go runtime; resident: %s", fmtBytes(cr.GoHeap), fmtBytes(cr.GoHeld), strings.Join(cr.Resident, ", "))
	if cr.Mode == costTraining {
		line += fmt.Sprintf(", trained %t in %.1f s", cr.Trained, cr.TrainSeconds)
		if cr.Window != nil {
			line += fmt.Sprintf(" (while training: p50 %s, p99 %s over %d requests)", fmtUS(cr.Window.P50), fmtUS(cr.Window.P99), cr.Window.N)
		}
	}
	if cr.FirstError != "" {
		line += "\n    first error: " + cr.FirstError
	}
	fmt.Fprintln(w, line)
}

// writeCost reports the medians over the repeats and the goals as ratios
// within the run.
func writeCost(w io.Writer, c conditions, o options, runs []costRun) {
	writeConditions(w, c)
	by := byMode(runs, func(r costRun) string { return r.Mode })
	med := func(rs []costRun, f func(costRun) float64) float64 { return medianOf(rs, f) }
	fmt.Fprintf(w, "\n### Cost per request at %d req/s non-streaming (median of %d)\n\n", o.costRate, o.repeat)
	fmt.Fprintln(w, "CPU: utime + stime of each process over the measured requests, per request. direct = straight to teacher-sim; relayed = through the gateway, domain pinned to the teacher; student = domain pinned to the student, which answers every request. Peak RSS: the gateway's over the phase.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mode | req/s | p50 | p99 | gateway CPU µs/req | teacher-sim CPU µs/req | gateway peak RSS | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range []string{modeDirect, costRelayed, costStudent, costTraining} {
		rs := by[m]
		if len(rs) == 0 {
			continue
		}
		errs := errorsOf(rs)
		gcpu, scpu := "–", "–"
		if m != modeDirect {
			gcpu = fmt.Sprintf("%.0f (%s)", med(rs, func(r costRun) float64 { return r.GatewayCPU }), fmtRange(rs, func(r costRun) float64 { return r.GatewayCPU }))
		}
		if m != costStudent {
			scpu = fmt.Sprintf("%.0f (%s)", med(rs, func(r costRun) float64 { return r.SimCPU }), fmtRange(rs, func(r costRun) float64 { return r.SimCPU }))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %d |\n", m,
			med(rs, func(r costRun) float64 { return r.Throughput }),
			fmtUS(med(rs, func(r costRun) float64 { return r.Latency.P50 })),
			fmtUS(med(rs, func(r costRun) float64 { return r.Latency.P99 })),
			gcpu, scpu, fmtBytes(int64(med(rs, func(r costRun) float64 { return float64(r.PeakRSS) }))), errs)
	}
	d, rl, st := by[modeDirect], by[costRelayed], by[costStudent]
	if len(d) == 0 || len(rl) == 0 || len(st) == 0 {
		return
	}
	simOwn := med(rl, func(r costRun) float64 { return r.SimCPU })
	relayed := med(rl, func(r costRun) float64 { return r.GatewayCPU })
	student := med(st, func(r costRun) float64 { return r.GatewayCPU })
	floor := med(d, func(r costRun) float64 { return r.Latency.P50 })
	stP50 := med(st, func(r costRun) float64 { return r.Latency.P50 })
	peak := slicesMax(rl, st)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Relayed request: gateway %.0f µs CPU, %.2f× teacher-sim's own %.0f µs in the same phases (direct: %.0f µs).\n",
		relayed, relayed/simOwn, simOwn, med(d, func(r costRun) float64 { return r.SimCPU }))
	fmt.Fprintf(w, "Student answer: gateway %.0f µs CPU, %.2f× teacher-sim's own; client p50 %s, %.2f× the direct floor %s.\n",
		student, student/simOwn, fmtUS(stP50), stP50/floor, fmtUS(floor))
	fmt.Fprintf(w, "Gateway peak RSS at %d req/s: %s (highest of the relayed and student phases).\n", o.costRate, fmtBytes(peak))
	for _, r := range by[costTraining] {
		win := ""
		if r.Window != nil {
			win = fmt.Sprintf("; client p50 %s, p99 %s over the %d requests scheduled while it trained", fmtUS(r.Window.P50), fmtUS(r.Window.P99), r.Window.N)
		}
		fmt.Fprintf(w, "While training (%d req/s relayed, trained %t in %.1f s): gateway peak RSS %s%s.\n",
			r.Rate, r.Trained, r.TrainSeconds, fmtBytes(r.PeakRSS), win)
	}
}

// slicesMax is the highest PeakRSS of the runs.
func slicesMax(rss ...[]costRun) int64 {
	var m int64
	for _, rs := range rss {
		for _, r := range rs {
			m = max(m, r.PeakRSS)
		}
	}
	return m
}
