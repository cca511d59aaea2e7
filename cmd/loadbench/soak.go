package main

// The soak (-soak): the gateway at a steady rate for a long stretch, with
// the trainer on, while the faults of the field are injected one after the
// other. It answers: does anything crash the gateway, do clients see errors
// other than the teacher's own, and do memory and goroutines stay flat?
//
// Timeline, as shares of -soak-duration (10 minutes by default):
//
//	0.10        teacher restart (SIGTERM, a new process on the same port)
//	0.20–0.30   the teacher answers 30% of requests with 500
//	0.40–0.50   slow-header flood: soakFloodConns connections trickling
//	            partial headers, reopened as the gateway cuts them off
//	0.55–0.65   the data directory's filesystem is full (a tmpfs filled
//	            with a file, then freed; root only, else skipped)
//	0.75        teacher restart
//
// Client errors are allowed only while the teacher itself fails: from the
// start of each teacher fault to soakGrace after its end. Every other error
// is unexpected. RSS and goroutines are compared between the steady window
// before the first fault (0.03–0.10) and the last stretch (0.85–1.0).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

const (
	soakFloodConns = 1500 // below the soak gateway's max_conns
	soakMaxConns   = 2000
	soakGrace      = 5 * time.Second
	soakTmpfsSize  = "2g"
)

// soakWindow is a stretch of the soak during which a fault is active.
type soakWindow struct {
	Name        string        `json:"name"`
	From        time.Duration `json:"from_ns"`
	To          time.Duration `json:"to_ns"`
	TeacherFail bool          `json:"teacher_fails"` // client errors are allowed in it
	Skipped     string        `json:"skipped,omitempty"`
}

// soakSample is one reading of the gateway process.
type soakSample struct {
	At          time.Duration `json:"at_ns"`
	RSS         int64         `json:"rss_bytes"`
	GoSys       float64       `json:"go_sys_bytes"` // memory the Go runtime holds; RSS beyond it is C (ONNX Runtime)
	HeapInuse   float64       `json:"go_heap_inuse_bytes"`
	Goroutines  float64       `json:"goroutines"`
	FDs         int           `json:"fds"`
	OpenConns   float64       `json:"open_connections"`
	PairsLogged float64       `json:"pairs_logged"`
	Dropped     float64       `json:"pairs_dropped"`
	Breaker     float64       `json:"breaker_state"`
}

// soakResult is what the soak reports, also written as JSON.
type soakResult struct {
	Conditions  conditions       `json:"conditions"`
	Duration    time.Duration    `json:"duration_ns"`
	Rate        int              `json:"rate"`
	Sent        int64            `json:"sent"`
	OK          int64            `json:"ok"`
	Errors      []int64          `json:"errors_per_second"`
	ErrorKinds  []string         `json:"first_error_of_each_second"`
	Unexpected  int64            `json:"unexpected_errors"`
	FirstErrors []string         `json:"first_unexpected_errors"`
	Windows     []soakWindow     `json:"windows"`
	Samples     []soakSample     `json:"samples"`
	Crashes     int              `json:"crashes"`
	Dropped     map[string]int64 `json:"pairs_dropped_by_reason"`
	Refused     float64          `json:"refused_connections"`
	Retries     map[string]int64 `json:"teacher_retries_by_reason"`
	LoadBehind  int64            `json:"requests_not_sent_in_time"`
}

// soak is one soak run.
type soak struct {
	o       options
	dir     string
	dataDir string
	tmpfs   bool
	stderr  io.Writer
	simAddr string
	sim     *proc
	simMu   sync.Mutex
	gw      *proc
	start   time.Time
	res     soakResult

	errMu     sync.Mutex
	errAt     []int64  // errors per second
	errKind   []string // the first error of each second
	firstErrs []string
	sent, ok  atomic.Int64
	behind    atomic.Int64
}

// runSoak runs the soak and writes its report.
func runSoak(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	dir, err := workDir(o, "soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &soak{o: o, dir: dir, dataDir: filepath.Join(dir, "data"), stderr: stderr}
	s.res.Conditions = currentConditions(o)
	s.res.Rate, s.res.Duration = o.soakRate, o.soakDuration
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+soakTmpfsSize, "tmpfs", s.dataDir).CombinedOutput(); err == nil {
		s.tmpfs = true
		defer func() { _ = exec.Command("umount", "-l", s.dataDir).Run() }()
	} else {
		fmt.Fprintf(stderr, "soak: no tmpfs for the data directory (%s): the full-disk fault is skipped\n", strings.TrimSpace(string(out)))
	}

	ds, err := writeTexts(filepath.Join(dir, "soak.jsonl"), 2000, 400, makeTopicText)
	if err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	s.simAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	if err := s.startSim(ctx, ds.path); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.stopSim()) }()
	s.gw, err = startGateway(ctx, o.bin, "gateway-soak", dir, s.dataDir, s.simAddr, []string{
		"UNDERSTUDY_TRAINER_ENABLED=true",
		"UNDERSTUDY_LOG_LEVEL=info",
		"UNDERSTUDY_GATEWAY_MAX_CONNS=" + strconv.Itoa(soakMaxConns),
		"UNDERSTUDY_STORAGE_MAX_PAIRS_PER_DOMAIN=100000",
		"UNDERSTUDY_STORAGE_RETENTION_INTERVAL=1m",
	})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.gw.stop()) }()

	d := o.soakDuration
	at := func(f float64) time.Duration { return time.Duration(f * float64(d)) }
	s.res.Windows = []soakWindow{
		{Name: "teacher restart", From: at(0.10), To: at(0.10), TeacherFail: true},
		{Name: "teacher 30% errors", From: at(0.20), To: at(0.30), TeacherFail: true},
		{Name: "slow-header flood", From: at(0.40), To: at(0.50)},
		{Name: "disk full", From: at(0.55), To: at(0.65)},
		{Name: "teacher restart", From: at(0.75), To: at(0.75), TeacherFail: true},
	}
	if !s.tmpfs {
		s.res.Windows[3].Skipped = "no tmpfs (not root?)"
	}
	s.errAt = make([]int64, int(d/time.Second)+1)
	s.errKind = make([]string, len(s.errAt))

	fmt.Fprintf(stderr, "soak: %s at %d req/s (a fifth streamed), trainer on, faults at 10%%..75%%; gateway log %s\n", d, o.soakRate, s.gw.logPath)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	s.start = time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { s.load(ctx, ds) })
	wg.Go(func() { s.sample(ctx) })
	faultErr := s.faults(ctx, ds.path)
	wg.Wait()
	s.finish()
	if faultErr != nil && !errors.Is(faultErr, context.DeadlineExceeded) {
		return faultErr
	}
	if o.soakJSON != "" {
		b, _ := json.MarshalIndent(s.res, "", "  ")
		if err := os.WriteFile(o.soakJSON, b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", o.soakJSON, err)
		}
	}
	s.report(stdout)
	if s.res.Crashes > 0 || s.res.Unexpected > 0 {
		return fmt.Errorf("soak failed: %d crashes, %d unexpected client errors", s.res.Crashes, s.res.Unexpected)
	}
	return nil
}

func (s *soak) startSim(ctx context.Context, data string) error {
	sim, err := startProc("teacher-sim-soak", s.simAddr, s.dir, s.o.bin, nil,
		"teacher-sim", "--listen", s.simAddr, "--task", "soak="+data, "--latency", "2ms")
	if err != nil {
		return err
	}
	if err := sim.waitReady(ctx, "http://"+s.simAddr+"/v1/models"); err != nil {
		return err
	}
	s.simMu.Lock()
	s.sim = sim
	s.simMu.Unlock()
	return nil
}

func (s *soak) stopSim() error {
	s.simMu.Lock()
	defer s.simMu.Unlock()
	return s.sim.stop()
}

// faults injects the timeline's faults in order.
func (s *soak) faults(ctx context.Context, data string) error {
	wait := func(t time.Duration) error {
		select {
		case <-time.After(time.Until(s.start.Add(t))):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, w := range s.res.Windows {
		if w.Skipped != "" {
			continue
		}
		if err := wait(w.From); err != nil {
			return err
		}
		fmt.Fprintf(s.stderr, "soak: %5.0fs %s\n", time.Since(s.start).Seconds(), w.Name)
		switch w.Name {
		case "teacher restart":
			if err := s.stopSim(); err != nil {
				return err
			}
			if err := s.startSim(ctx, data); err != nil {
				return err
			}
		case "teacher 30% errors":
			if err := s.simConfig(`{"error_rate":0.3}`); err != nil {
				return err
			}
			if err := wait(w.To); err != nil {
				return err
			}
			if err := s.simConfig(`{"error_rate":0}`); err != nil {
				return err
			}
		case "slow-header flood":
			fctx, cancel := context.WithTimeout(ctx, w.To-w.From)
			s.flood(fctx)
			cancel()
		case "disk full":
			if err := s.fillDisk(ctx, w.To); err != nil {
				return err
			}
		}
		fmt.Fprintf(s.stderr, "soak: %5.0fs %s over\n", time.Since(s.start).Seconds(), w.Name)
	}
	<-ctx.Done()
	return nil
}

func (s *soak) simConfig(body string) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + s.simAddr + "/sim/config")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetBodyString(body)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
		return fmt.Errorf("setting teacher-sim %s: %v %d", body, err, resp.StatusCode())
	}
	return nil
}

// flood holds soakFloodConns connections that send a partial request line
// and headers, then nothing; each is reopened when the gateway closes it.
func (s *soak) flood(ctx context.Context) {
	var wg sync.WaitGroup
	for range soakFloodConns {
		wg.Go(func() {
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				c, err := net.DialTimeout("tcp", s.gw.addr, time.Second)
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				_, _ = c.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: appl"))
				stop := context.AfterFunc(ctx, func() { c.Close() })
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				stop()
				c.Close()
			}
		})
	}
	wg.Wait()
}

// fillDisk fills the data directory's filesystem with a file until it is
// full, holds it so until the window ends, then removes it.
func (s *soak) fillDisk(ctx context.Context, until time.Duration) error {
	path := filepath.Join(s.dataDir, "soak-filler")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("filling the disk: %w", err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			break // ENOSPC: full
		}
	}
	f.Close()
	select {
	case <-time.After(time.Until(s.start.Add(until))):
	case <-ctx.Done():
	}
	return os.Remove(path)
}

// load sends the soak's requests open-loop at the rate: a scheduler hands
// each request to one of the workers at its time; when every worker is
// busy the request is counted as behind and sent when one frees up.
func (s *soak) load(ctx context.Context, ds *dataset) {
	client := newClient(s.gw.addr, s.o.conns)
	defer client.CloseIdleConnections()
	jobs := make(chan int64, s.o.conns)
	var wg sync.WaitGroup
	url := "http://" + s.gw.addr + "/v1/chat/completions"
	for range s.o.conns {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			for i := range jobs {
				ex := int(i % int64(len(ds.bodies)))
				stream := i%5 == 0
				if stream {
					req.SetBodyRaw(ds.streamBodies[ex])
				} else {
					req.SetBodyRaw(ds.bodies[ex])
				}
				err := client.DoTimeout(req, resp, 30*time.Second)
				s.sent.Add(1)
				switch {
				case err != nil:
					s.noteErr("transport: " + err.Error())
				case resp.StatusCode() != 200:
					s.noteErr(fmt.Sprintf("status %d: %.160s", resp.StatusCode(), resp.Body()))
				case stream && (!bytes.Contains(resp.Body(), []byte("data: [DONE]")) || bytes.Contains(resp.Body(), []byte(`"error"`))):
					s.noteErr(fmt.Sprintf("incomplete stream: %.160s", resp.Body()))
				default:
					s.ok.Add(1)
				}
			}
		})
	}
	interval := time.Second / time.Duration(s.o.soakRate)
	var n int64
	for ctx.Err() == nil {
		due := int64(time.Since(s.start) / interval)
		for ; n < due && ctx.Err() == nil; n++ {
			select {
			case jobs <- n:
			default:
				s.behind.Add(1)
				select {
				case jobs <- n:
				case <-ctx.Done():
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(jobs)
	wg.Wait()
}

func (s *soak) noteErr(msg string) {
	at := time.Since(s.start)
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if sec := int(at / time.Second); sec < len(s.errAt) {
		s.errAt[sec]++
		if s.errKind[sec] == "" {
			s.errKind[sec] = msg
		}
	}
	if !s.allowed(at) {
		s.res.Unexpected++
		if len(s.firstErrs) < 10 {
			s.firstErrs = append(s.firstErrs, fmt.Sprintf("%.1fs %s", at.Seconds(), msg))
		}
	}
}

// allowed reports whether a client error at t falls in a teacher fault.
func (s *soak) allowed(t time.Duration) bool {
	for _, w := range s.res.Windows {
		if w.TeacherFail && t >= w.From-time.Second && t <= w.To+soakGrace {
			return true
		}
	}
	return false
}

// sample reads the gateway every 5 s and notes a crash.
func (s *soak) sample(ctx context.Context) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.gw.exited() {
			s.res.Crashes++
			fmt.Fprintf(s.stderr, "soak: the gateway exited: %v%s\n", s.gw.waitErr, s.gw.logTail())
			return
		}
		sm := soakSample{At: time.Since(s.start)}
		if m, err := readMemory(s.gw.pid()); err == nil {
			sm.RSS = m.RSS
		}
		if ents, err := os.ReadDir("/proc/" + strconv.Itoa(s.gw.pid()) + "/fd"); err == nil {
			sm.FDs = len(ents)
		}
		if text, err := scrapeMetrics(s.gw.addr); err == nil {
			v := func(name string) float64 {
				m, _ := parseSamples(text, name)
				var sum float64
				for _, x := range m {
					sum += x
				}
				return sum
			}
			sm.Goroutines, sm.OpenConns = v("go_goroutines"), v("understudy_gateway_open_connections")
			sm.PairsLogged, sm.Dropped = v("understudy_storage_pairs_logged_total"), v("understudy_storage_pairs_dropped_total")
			sm.Breaker = v("understudy_teacher_breaker_state")
			sm.GoSys, sm.HeapInuse = v("go_memstats_sys_bytes"), v("go_memstats_heap_inuse_bytes")
		}
		s.res.Samples = append(s.res.Samples, sm)
		fmt.Fprintf(s.stderr, "soak: %5.0fs rss %s (go heap %s, go sys %s) goroutines %.0f fds %d conns %.0f pairs %.0f dropped %.0f breaker %.0f errors %d\n",
			sm.At.Seconds(), fmtBytes(sm.RSS), fmtBytes(int64(sm.HeapInuse)), fmtBytes(int64(sm.GoSys)), sm.Goroutines, sm.FDs, sm.OpenConns, sm.PairsLogged, sm.Dropped, sm.Breaker, s.errTotal())
	}
}

func (s *soak) errTotal() int64 {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	var n int64
	for _, e := range s.errAt {
		n += e
	}
	return n
}

// finish gathers the last counters.
func (s *soak) finish() {
	s.res.Sent, s.res.OK, s.res.LoadBehind = s.sent.Load(), s.ok.Load(), s.behind.Load()
	s.errMu.Lock()
	s.res.Errors, s.res.ErrorKinds, s.res.FirstErrors = s.errAt, s.errKind, s.firstErrs
	s.errMu.Unlock()
	if s.gw.exited() && s.res.Crashes == 0 {
		s.res.Crashes++
	}
	text, err := scrapeMetrics(s.gw.addr)
	if err != nil {
		return
	}
	byLabel := func(name, label string) map[string]int64 {
		m, _ := parseSamples(text, name)
		out := map[string]int64{}
		for k, v := range m {
			_, val, _ := strings.Cut(k, label+`="`)
			val, _, _ = strings.Cut(val, `"`)
			out[val] += int64(v)
		}
		return out
	}
	s.res.Dropped = byLabel("understudy_storage_pairs_dropped_total", "reason")
	s.res.Retries = byLabel("understudy_teacher_retries_total", "reason")
	if m, _ := parseSamples(text, "understudy_gateway_refused_connections_total"); m != nil {
		for _, v := range m {
			s.res.Refused += v
		}
	}
}

func scrapeMetrics(addr string) ([]byte, error) {
	status, body, err := fasthttp.GetTimeout(nil, "http://"+addr+"/metrics", 5*time.Second)
	if err != nil || status != 200 {
		return nil, fmt.Errorf("scraping %s: %v %d", addr, err, status)
	}
	return body, nil
}

// report writes the soak's summary.
func (s *soak) report(w io.Writer) {
	r := &s.res
	c := r.Conditions
	fmt.Fprintf(w, "\nSoak: %s at %d req/s (a fifth streamed, %d client connections), trainer on, over loopback\n", r.Duration, r.Rate, s.o.conns)
	fmt.Fprintf(w, "- Machine: %d CPUs (%s), %s; %s; understudy %s; %s. Load generator, teacher-sim (2 ms) and gateway share it.\n",
		c.CPUs, c.CPUModel, c.Platform, c.GoVersion, c.Understudy, c.Date)
	fmt.Fprintf(w, "requests: %d sent, %d ok, %d failed; %d could not be sent on time (client saturated)\n",
		r.Sent, r.OK, r.Sent-r.OK, r.LoadBehind)
	fmt.Fprintf(w, "crashes: %d\n", r.Crashes)
	fmt.Fprintf(w, "client errors outside teacher faults: %d\n", r.Unexpected)
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	fmt.Fprintln(w, "\nfault                  window          client errors in it (+5s)")
	for _, win := range r.Windows {
		if win.Skipped != "" {
			fmt.Fprintf(w, "%-22s skipped: %s\n", win.Name, win.Skipped)
			continue
		}
		var n int64
		kind := ""
		for sec := int(win.From / time.Second); sec <= int((win.To+soakGrace)/time.Second) && sec < len(r.Errors); sec++ {
			n += r.Errors[sec]
			if kind == "" {
				kind = r.ErrorKinds[sec]
			}
		}
		fmt.Fprintf(w, "%-22s %5.0fs–%-5.0fs  %d", win.Name, win.From.Seconds(), win.To.Seconds(), n)
		if kind != "" {
			fmt.Fprintf(w, " (first: %.100s)", kind)
		}
		fmt.Fprintln(w)
	}
	keys := func(m map[string]int64) string {
		var parts []string
		for k, v := range m {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(parts)
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "\npairs dropped by reason: %s\n", keys(r.Dropped))
	fmt.Fprintf(w, "teacher retries by reason: %s\n", keys(r.Retries))
	fmt.Fprintf(w, "connections refused at the cap: %.0f\n", r.Refused)

	// Flatness: the steady window before the faults, the middle, the end.
	// Each client connection holds a goroutine and a descriptor, and the
	// load generator opens more of them after a slowdown, so those are
	// compared less the open connections.
	window := func(from, to float64, f func(soakSample) float64) float64 {
		var xs []float64
		for _, sm := range r.Samples {
			if at := float64(sm.At) / float64(r.Duration); at >= from && at <= to {
				xs = append(xs, f(sm))
			}
		}
		return median(xs)
	}
	if len(r.Samples) == 0 {
		fmt.Fprintln(w, "\nno samples of the last stretch: the gateway did not run to the end")
		return
	}
	peak := slices.MaxFunc(r.Samples, func(a, b soakSample) int { return int(a.RSS - b.RSS) })
	fmt.Fprintf(w, "\nmedians                        before faults   middle   last 15%%   last/before\n")
	for _, row := range []struct {
		name string
		f    func(soakSample) float64
		unit func(float64) string
	}{
		{"RSS", func(sm soakSample) float64 { return float64(sm.RSS) }, func(x float64) string { return fmtBytes(int64(x)) }},
		{"Go heap in use", func(sm soakSample) float64 { return sm.HeapInuse }, func(x float64) string { return fmtBytes(int64(x)) }},
		{"client connections", func(sm soakSample) float64 { return sm.OpenConns }, func(x float64) string { return fmt.Sprintf("%.0f", x) }},
		{"goroutines less connections", func(sm soakSample) float64 { return sm.Goroutines - sm.OpenConns }, func(x float64) string { return fmt.Sprintf("%.0f", x) }},
		{"open fds less connections", func(sm soakSample) float64 { return float64(sm.FDs) - sm.OpenConns }, func(x float64) string { return fmt.Sprintf("%.0f", x) }},
	} {
		a, m, b := window(0.03, 0.10, row.f), window(0.50, 0.65, row.f), window(0.85, 1.0, row.f)
		show := func(x float64) string {
			if math.IsNaN(x) {
				return "–"
			}
			return row.unit(x)
		}
		fmt.Fprintf(w, "%-30s %-15s %-8s %-11s %.2f\n", row.name, show(a), show(m), show(b), b/a)
	}
	fmt.Fprintf(w, "peak RSS %s at %.0fs\n", fmtBytes(peak.RSS), peak.At.Seconds())
}
