package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Targets of a phase.
const (
	direct  = "direct"
	gateway = "gateway"
)

// overheadMetric is the gateway's histogram of its own time per request.
const (
	overheadMetric = "understudy_gateway_overhead_seconds"
	overheadLabel  = `endpoint="chat_completions"`
)

const requestTimeout = 10 * time.Second

// bench runs phases against the two servers.
type bench struct {
	o       options
	ds      *dataset
	dir     string // temporary directory: data set, logs, gateway data
	sim     *proc
	gw      *proc
	clients map[string]*fasthttp.HostClient
	urls    map[string]string
	ctl     *fasthttp.Client // readiness checks and scrapes, apart from the load's connections
	stderr  io.Writer
	res     *results
}

// results is everything a run measured.
type results struct {
	Conditions conditions    `json:"conditions"`
	Phases     []phaseResult `json:"phases"`
	// Gateway memory when the load ended, and its peak over the whole run.
	FinalMemory memory `json:"gateway_final_memory"`
	PeakRSS     int64  `json:"gateway_peak_rss_bytes"`
	// Logging is the pair-logging comparison, run after the phases, each
	// run on a fresh gateway (-logging-compare).
	Logging []loggingRun `json:"logging_compare,omitempty"`
	// Retention is the retention comparison, each run on a fresh gateway
	// (-retention-compare).
	Retention []retentionRun `json:"retention_compare,omitempty"`
	// Student is the student comparison, run last on its own teacher-sim
	// and gateway (-student-compare).
	Student []studentRun `json:"student_compare,omitempty"`
}

// phaseResult is one run of one phase against one target.
type phaseResult struct {
	Repeat int    `json:"repeat"`
	Target string `json:"target"`
	phase
	loadResult
	// Gateway phases only: the overhead histogram over the measured
	// requests, and memory after the phase (its peak is the phase's own
	// when PeakReset).
	Overhead  *overhead `json:"overhead,omitempty"`
	Memory    *memory   `json:"gateway_memory,omitempty"`
	PeakReset bool      `json:"peak_reset,omitempty"`
}

// overhead is the delta of the gateway's overhead histogram over a phase
// and its quantiles in microseconds.
type overhead struct {
	Histogram histogram `json:"histogram"`
	Count     float64   `json:"count"`
	P50       number    `json:"p50_us"`
	P99       number    `json:"p99_us"`
	P999      number    `json:"p999_us"`
}

// conditions describe the machine and the settings of a run.
type conditions struct {
	Date          string  `json:"date"`
	CPUs          int     `json:"cpus"`
	CPUModel      string  `json:"cpu_model,omitempty"`
	GOMAXPROCS    int     `json:"gomaxprocs"`
	EnvGOMAXPROCS string  `json:"env_gomaxprocs,omitempty"`
	GoVersion     string  `json:"go_version"`
	Platform      string  `json:"platform"`
	Understudy    string  `json:"understudy_version"`
	Rates         []int   `json:"rates"`
	Stream        bool    `json:"stream"`
	StreamRate    int     `json:"stream_rate,omitempty"`
	Duration      float64 `json:"duration_seconds"`
	Warmup        float64 `json:"warmup_seconds"`
	Repeat        int     `json:"repeat"`
	BodyBytes     int     `json:"body_bytes"`
	Examples      int     `json:"examples"`
	Conns         int     `json:"conns"`
	// LoggingCompare: the pair-logging comparison ran, at goalRate.
	LoggingCompare bool `json:"logging_compare"`
	// StudentCompare: the student comparison ran, at studentRate.
	StudentCompare bool `json:"student_compare"`
	// RetentionCompare: the retention comparison ran, at RetentionRate,
	// RetentionExcess pairs over the cap, RetentionDuration seconds a run.
	RetentionCompare  bool    `json:"retention_compare"`
	RetentionRate     int     `json:"retention_rate,omitempty"`
	RetentionExcess   int     `json:"retention_excess,omitempty"`
	RetentionDuration float64 `json:"retention_duration_seconds,omitempty"`
}

func newBench(o options, ds *dataset, dir string, sim, gw *proc, stderr io.Writer) *bench {
	b := &bench{
		o: o, ds: ds, dir: dir, sim: sim, gw: gw, stderr: stderr,
		clients: map[string]*fasthttp.HostClient{},
		urls: map[string]string{
			direct:  "http://" + sim.addr + "/v1/chat/completions",
			gateway: "http://" + gw.addr + "/v1/chat/completions",
		},
		ctl: &fasthttp.Client{ReadTimeout: requestTimeout, WriteTimeout: requestTimeout},
	}
	for name, p := range map[string]*proc{direct: sim, gateway: gw} {
		b.clients[name] = newClient(p.addr, o.conns)
	}
	b.res = &results{Conditions: currentConditions(o)}
	return b
}

// newClient returns the load's client for a server: conns connections.
func newClient(addr string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:               addr,
		MaxConns:           conns,
		MaxConnWaitTimeout: requestTimeout,
		ReadTimeout:        requestTimeout,
		WriteTimeout:       requestTimeout,
	}
}

// close closes the client connections.
func (b *bench) close() {
	for _, c := range b.clients {
		c.CloseIdleConnections()
	}
	b.ctl.CloseIdleConnections()
}

// preflight sends one request of each kind to each target, so that a
// broken setup fails at once with the answer it got.
func (b *bench) preflight() error {
	for _, t := range []string{direct, gateway} {
		for _, stream := range []bool{false, true} {
			if stream && !b.o.stream {
				continue
			}
			if err := b.check(b.urls[t], b.bodies(stream)[0], b.ds.want[0]); err != nil {
				return fmt.Errorf("checking %s (stream %t) at %s: %w", t, stream, b.urls[t], err)
			}
		}
	}
	return nil
}

// startChecked starts a gateway named name on dataDir in front of the
// bench's teacher-sim and checks that it answers the data set's first
// request; the caller stops it.
func (b *bench) startChecked(ctx context.Context, name, dataDir string, env []string) (*proc, error) {
	gw, err := startGateway(ctx, b.o.bin, name, b.dir, dataDir, b.sim.addr, env)
	if err != nil {
		return nil, err
	}
	url := "http://" + gw.addr + "/v1/chat/completions"
	if err := b.check(url, b.ds.bodies[0], b.ds.want[0]); err != nil {
		return nil, errors.Join(fmt.Errorf("checking %s at %s: %w", name, url, err), gw.stop())
	}
	return gw, nil
}

// check sends one request and wants a 200 whose body contains want.
func (b *bench) check(url string, body, want []byte) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := b.ctl.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() != fasthttp.StatusOK || !bytes.Contains(resp.Body(), want) {
		return fmt.Errorf("status %d, want 200 and %s in %.300q", resp.StatusCode(), want, resp.Body())
	}
	return nil
}

func (b *bench) bodies(stream bool) [][]byte {
	if stream {
		return b.ds.streamBodies
	}
	return b.ds.bodies
}

// runAll runs every phase -repeat times, alternating which target goes
// first, and returns the results.
func (b *bench) runAll(ctx context.Context) (*results, error) {
	m, err := readMemory(b.gw.pid())
	if err != nil {
		return nil, err
	}
	b.res.PeakRSS = m.Peak // start-up
	phases := b.o.phases()
	n, total := 0, b.o.repeat*len(phases)*2
	for r := range b.o.repeat {
		for i, ph := range phases {
			order := []string{direct, gateway}
			if (r+i)%2 == 1 {
				order = []string{gateway, direct}
			}
			for _, t := range order {
				n++
				pr, err := b.runPhase(ctx, r+1, ph, t)
				if err != nil {
					return nil, fmt.Errorf("running %s %d req/s %s (repeat %d): %w", ph.mode(), ph.Rate, t, r+1, err)
				}
				b.res.Phases = append(b.res.Phases, pr)
				b.progress(n, total, pr)
			}
		}
	}
	if b.res.FinalMemory, err = readMemory(b.gw.pid()); err != nil {
		return nil, err
	}
	b.res.PeakRSS = max(b.res.PeakRSS, b.res.FinalMemory.Peak)
	return b.res, nil
}

// runPhase runs one open-loop load; against the gateway it also scrapes the
// overhead histogram at the start and end of the measured requests and
// reads the gateway's memory.
func (b *bench) runPhase(ctx context.Context, repeat int, ph phase, t string) (phaseResult, error) {
	pr := phaseResult{Repeat: repeat, Target: t, phase: ph}
	isGW := t == gateway
	if isGW {
		pr.PeakReset = resetPeak(b.gw.pid()) == nil
	}
	l := startLoad(ctx, b.clients[t], b.urls[t], b.bodies(ph.Stream), b.ds.want,
		ph.Rate, b.o.warmup, b.o.duration, b.o.conns)
	if !isGW {
		res, err := l.wait(ctx)
		pr.loadResult = res
		return pr, err
	}
	var err error
	if pr.loadResult, pr.Overhead, err = b.waitOverhead(ctx, l, b.gw.addr); err != nil {
		return pr, err
	}
	m, err := readMemory(b.gw.pid())
	if err != nil {
		return pr, err
	}
	pr.Memory = &m
	b.res.PeakRSS = max(b.res.PeakRSS, m.Peak)
	return pr, nil
}

// waitOverhead waits for a load against the gateway at addr and returns
// its result with the overhead histogram over its measured requests,
// scraped when they start and when the load ends.
func (b *bench) waitOverhead(ctx context.Context, l *load, addr string) (loadResult, *overhead, error) {
	var before histogram
	var scrapeErr error
	select {
	case <-time.After(time.Until(l.measureStart())):
		before, scrapeErr = b.scrapeOverhead(addr)
	case <-ctx.Done():
	}
	res, err := l.wait(ctx)
	if err != nil {
		return res, nil, err
	}
	if scrapeErr != nil {
		return res, nil, scrapeErr
	}
	after, err := b.scrapeOverhead(addr)
	if err != nil {
		return res, nil, err
	}
	d, err := after.sub(before)
	if err != nil {
		return res, nil, err
	}
	return res, &overhead{Histogram: d, Count: d.count(),
		P50: number(d.quantile(.50) * 1e6), P99: number(d.quantile(.99) * 1e6), P999: number(d.quantile(.999) * 1e6)}, nil
}

// scrape reads the /metrics page of the gateway at addr.
func (b *bench) scrape(addr string) ([]byte, error) {
	url := "http://" + addr + "/metrics"
	status, body, err := b.ctl.GetTimeout(nil, url, requestTimeout)
	if err == nil && status != fasthttp.StatusOK {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	return body, nil
}

// scrapeOverhead reads the overhead histogram from the gateway at addr.
func (b *bench) scrapeOverhead(addr string) (histogram, error) {
	body, err := b.scrape(addr)
	if err != nil {
		return histogram{}, err
	}
	return parseHistogram(body, overheadMetric, overheadLabel)
}

// progress prints one line per finished phase to stderr.
func (b *bench) progress(n, total int, pr phaseResult) {
	line := fmt.Sprintf("[%d/%d] repeat %d %-6s %5d req/s %-7s: %5.0f req/s, p50 %s, p99 %s, errors %d, send lag p99 %s",
		n, total, pr.Repeat, pr.mode(), pr.Rate, pr.Target, pr.Throughput,
		fmtUS(pr.Latency.P50), fmtUS(pr.Latency.P99), pr.errors(), fmtUS(pr.SendLag.P99))
	if pr.Overhead != nil {
		line += fmt.Sprintf(", overhead p50 %s p99 %s", fmtUS(float64(pr.Overhead.P50)), fmtUS(float64(pr.Overhead.P99)))
	}
	if pr.FirstError != "" {
		line += "\n    first error: " + pr.FirstError
	}
	fmt.Fprintln(b.stderr, line)
}

func currentConditions(o options) conditions {
	c := conditions{
		Date:          time.Now().UTC().Format(time.RFC3339),
		CPUs:          runtime.NumCPU(),
		CPUModel:      cpuModel(),
		GOMAXPROCS:    runtime.GOMAXPROCS(0),
		EnvGOMAXPROCS: os.Getenv("GOMAXPROCS"),
		GoVersion:     runtime.Version(),
		Platform:      runtime.GOOS + "/" + runtime.GOARCH,
		Understudy:    binVersion(o.bin),
		Rates:         o.rates,
		Stream:        o.stream,
		Duration:      o.duration.Seconds(),
		Warmup:        o.warmup.Seconds(),
		Repeat:        o.repeat,
		BodyBytes:     o.bodyBytes,
		Examples:      o.examples,
		Conns:         o.conns,

		LoggingCompare: o.loggingCompare,
		StudentCompare: o.studentCompare,

		RetentionCompare: o.retentionCompare,
	}
	if o.retentionCompare {
		c.RetentionRate, c.RetentionExcess, c.RetentionDuration = o.retentionRate, o.retentionExcess, o.retentionDuration.Seconds()
	}
	if o.stream {
		c.StreamRate = streamRate
	}
	return c
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// binVersion is the output of "understudy version", or "unknown".
func binVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "understudy"))
}
