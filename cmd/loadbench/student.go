package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// The student comparison: what a trained student costs while it shadows the
// teacher, and how fast it answers once it serves. It runs on its own
// teacher-sim and gateway, on a data set whose labels follow from the text
// (a student can learn it), at studentRate non-streaming:
//
//   - teacher-only: the domain pinned to the teacher, so no request is
//     scored by the student;
//   - shadowing: unpinned, the gate held shut (router.min_samples out of
//     reach): the teacher answers every request and the student scores
//     each one in the background;
//   - serving: promoted through the admin API: the student answers the
//     requests it is confident about, a shadow_rate share of them still go
//     to the teacher;
//   - direct: the same load straight to teacher-sim, interleaved with the
//     serving runs: what answering from memory costs over this loopback
//     in the same minutes.
//
// The first two interleave over -repeat on the same gateway process, so the
// only difference between them is shadow scoring; the gateway's CPU time
// over the measured requests (utime + stime of /proc/PID/stat) compares
// them. The trainer trains one student before the runs and none during them.

const (
	scoringCPUMetric = "understudy_shadow_cpu_seconds_total"
	predictionMetric = "understudy_student_prediction_duration_seconds"
	studentRate      = 1000
	// studentLatencyGoal is the goal for the p50 of student-served
	// requests, end to end through the gateway, in microseconds.
	studentLatencyGoal = 200
	// shadowCPUTolerance is how much more CPU shadow scoring may take.
	shadowCPUTolerance = 0.10
	// studentPairs is how many requests are sent to train the first
	// student (the trainer's min_pairs is 200).
	studentPairs = 600
	trainTimeout = 3 * time.Minute
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
	// 100 on every Linux architecture Go supports.
	clockTicks = 100
)

// Modes of the student comparison.
const (
	modeTeacher = "teacher-only"
	modeShadow  = "shadowing"
	modeServing = "serving"
	// modeDirect sends the same load straight to teacher-sim, between the
	// serving runs: the floor a student answer is measured against.
	modeDirect = "direct"
)

// studentEnv trains a student on the first pairs and no other (a domain
// retrains as its pairs double only up to max_train_pairs), and never
// promotes it by the gate.
var studentEnv = []string{
	"UNDERSTUDY_TRAINER_ENABLED=true",
	"UNDERSTUDY_TRAINER_RETRAIN_EVERY=1000000000",
	"UNDERSTUDY_TRAINER_MAX_TRAIN_PAIRS=" + strconv.Itoa(studentPairs),
	"UNDERSTUDY_ROUTER_MIN_SAMPLES=1000000000",
}

// topicWords make a label learnable: a quarter of a text's words come from
// its label's list.
var topicWords = map[string][]string{
	"billing":   strings.Fields("invoice charged amount payment statement overcharge"),
	"shipping":  strings.Fields("package tracking delivery courier warehouse parcel"),
	"refund":    strings.Fields("refund return reimburse money cancel chargeback"),
	"technical": strings.Fields("crash error bug install freeze timeout"),
	"account":   strings.Fields("password login username profile locked email"),
}

// makeTopicText returns a unique text of about size bytes that a student
// can classify.
func makeTopicText(rng *rand.Rand, i, size int, label string) string {
	var b strings.Builder
	b.Grow(size + 16)
	b.WriteString("Ticket " + strconv.Itoa(i) + ":")
	topic := topicWords[label]
	for b.Len() < size {
		b.WriteByte(' ')
		if rng.IntN(4) == 0 {
			b.WriteString(topic[rng.IntN(len(topic))])
		} else {
			b.WriteString(words[rng.IntN(len(words))])
		}
	}
	return b.String()
}

// studentRun is one run of the comparison.
type studentRun struct {
	Repeat int    `json:"repeat"`
	Mode   string `json:"mode"`
	Rate   int    `json:"rate"`
	loadResult
	// The gateway's CPU time over the measured requests, and that divided
	// by their duration (cores busy).
	CPUSeconds float64 `json:"gateway_cpu_seconds"`
	CPUCores   float64 `json:"gateway_cpu_cores"`
	// ScoringCores is the shadow pool's own CPU time over the measured
	// requests (understudy_shadow_cpu_seconds_total) divided by their
	// duration.
	ScoringCores float64 `json:"shadow_scoring_cores"`
	// PredictionP50 is the median time of the serving student's
	// predictions over the measured requests, in µs, from the gateway's
	// own histogram (predictionMetric); 0 when it made none.
	PredictionP50 float64 `json:"prediction_p50_us"`
}

// studentMetrics is what a student run reads from the gateway's metrics.
type studentMetrics struct {
	scoringCPU float64 // seconds
	prediction histogram
}

// startTriageSim writes the learnable triage data set in dir and starts a
// teacher-sim named name answering from it at once, ready; the caller
// stops it.
func startTriageSim(ctx context.Context, o options, dir, name string) (*proc, *dataset, error) {
	ds, err := writeTexts(filepath.Join(dir, "triage.jsonl"), o.examples, o.bodyBytes, makeTopicText)
	if err != nil {
		return nil, nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	sim, err := startProc(name, addr, dir, o.bin, nil,
		"teacher-sim", "--listen", addr, "--task", "triage="+ds.path, "--latency", "0s")
	if err != nil {
		return nil, nil, err
	}
	if err := sim.waitReady(ctx, "http://"+addr+"/v1/models"); err != nil {
		return nil, nil, errors.Join(err, sim.stop())
	}
	return sim, ds, nil
}

// runStudentCompare runs the comparison and adds its runs to the results.
func (b *bench) runStudentCompare(ctx context.Context) (err error) {
	sim, ds, err := startTriageSim(ctx, b.o, b.dir, "teacher-sim-triage")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sim.stop()) }()
	simAddr := sim.addr
	dataDir, err := os.MkdirTemp(b.dir, "gateway-student-data-")
	if err != nil {
		return fmt.Errorf("creating a data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	gw, err := startGateway(ctx, b.o.bin, "gateway-student", b.dir, dataDir, simAddr, studentEnv)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()
	client := newClient(gw.addr, b.o.conns)
	defer client.CloseIdleConnections()
	url := "http://" + gw.addr + "/v1/chat/completions"

	fmt.Fprintf(b.stderr, "student: %d requests to train a first student, then waiting for it...\n", studentPairs)
	domain, err := b.trainFirst(ctx, gw, url, ds)
	if err != nil {
		return err
	}

	pinned, serving := false, false
	run := func(repeat int, mode string) error {
		var err error
		switch {
		case mode == modeTeacher && !pinned:
			err = b.act(gw, domain, "pin-teacher")
			pinned = true
		case mode != modeTeacher && pinned:
			err = b.act(gw, domain, "unpin")
			pinned = false
		}
		if err == nil && mode == modeServing && !serving {
			err = b.act(gw, domain, "promote")
			serving = true
		}
		if err != nil {
			return err
		}
		sr, err := b.runStudentMode(ctx, gw, client, url, ds, repeat, mode)
		if err != nil {
			return fmt.Errorf("student comparison, %s (repeat %d): %w", mode, repeat, err)
		}
		b.res.Student = append(b.res.Student, sr)
		b.studentProgress(sr)
		return nil
	}
	for r := range b.o.repeat {
		order := []string{modeTeacher, modeShadow}
		if r%2 == 1 {
			order = []string{modeShadow, modeTeacher}
		}
		for _, m := range order {
			if err := run(r+1, m); err != nil {
				return err
			}
		}
	}
	simClient := newClient(simAddr, b.o.conns)
	defer simClient.CloseIdleConnections()
	direct := func(repeat int) error {
		sr := studentRun{Repeat: repeat, Mode: modeDirect, Rate: studentRate}
		l := startLoad(ctx, simClient, "http://"+simAddr+"/v1/chat/completions", ds.bodies, ds.want, studentRate, b.o.warmup, b.o.duration, b.o.conns)
		res, err := l.wait(ctx)
		if err != nil {
			return fmt.Errorf("student comparison, direct (repeat %d): %w", repeat, err)
		}
		sr.loadResult = res
		b.res.Student = append(b.res.Student, sr)
		b.studentProgress(sr)
		return nil
	}
	for r := range b.o.repeat {
		steps := []func() error{func() error { return run(r+1, modeServing) }, func() error { return direct(r + 1) }}
		if r%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	return nil
}

// runStudentMode loads the gateway at studentRate and reads its CPU time at
// the start and the end of the measured requests.
func (b *bench) runStudentMode(ctx context.Context, gw *proc, client *fasthttp.HostClient, url string, ds *dataset, repeat int, mode string) (studentRun, error) {
	sr := studentRun{Repeat: repeat, Mode: mode, Rate: studentRate}
	l := startLoad(ctx, client, url, ds.bodies, ds.want, studentRate, b.o.warmup, b.o.duration, b.o.conns)
	var before time.Duration
	var mBefore studentMetrics
	var beforeErr error
	select {
	case <-time.After(time.Until(l.measureStart())):
		before, beforeErr = readCPU(gw.pid())
		if beforeErr == nil {
			mBefore, beforeErr = b.scrapeStudent(gw.addr)
		}
	case <-ctx.Done():
	}
	res, err := l.wait(ctx)
	if err != nil {
		return sr, err
	}
	after, err := readCPU(gw.pid())
	if err = errors.Join(beforeErr, err); err != nil {
		return sr, err
	}
	mAfter, err := b.scrapeStudent(gw.addr)
	if err != nil {
		return sr, err
	}
	pred, err := mAfter.prediction.sub(mBefore.prediction)
	if err != nil {
		return sr, err
	}
	sr.loadResult = res
	sr.CPUSeconds = (after - before).Seconds()
	if res.Elapsed > 0 {
		sr.CPUCores = sr.CPUSeconds / res.Elapsed
		sr.ScoringCores = (mAfter.scoringCPU - mBefore.scoringCPU) / res.Elapsed
	}
	if pred.count() > 0 {
		sr.PredictionP50 = pred.quantile(.50) * 1e6
	}
	return sr, nil
}

// scrapeStudent reads the shadow pool's CPU seconds and the serving
// student's prediction times from the gateway at addr.
func (b *bench) scrapeStudent(addr string) (studentMetrics, error) {
	body, err := b.scrape(addr)
	if err != nil {
		return studentMetrics{}, err
	}
	cpu, err := parseSamples(body, scoringCPUMetric)
	if err != nil {
		return studentMetrics{}, err
	}
	pred, err := parseHistogram(body, predictionMetric, "")
	if err != nil {
		return studentMetrics{}, err
	}
	return studentMetrics{scoringCPU: cpu[""], prediction: pred}, nil
}

// trainFirst sends studentPairs of the data set's requests through the
// gateway at url, so its first student trains, and returns the domain
// once a student was trained (waitStudent).
func (b *bench) trainFirst(ctx context.Context, gw *proc, url string, ds *dataset) (string, error) {
	for i := range studentPairs {
		ex := i % len(ds.bodies)
		if err := b.check(url, ds.bodies[ex], ds.want[ex]); err != nil {
			return "", fmt.Errorf("training a student: request %d: %w", i, err)
		}
	}
	return b.waitStudent(ctx, gw)
}

// waitStudent waits until the gateway's one domain has a student in the
// shadow and returns the domain's name.
func (b *bench) waitStudent(ctx context.Context, gw *proc) (string, error) {
	url := "http://" + gw.admin + "/admin/domains"
	deadline := time.Now().Add(trainTimeout)
	for {
		var list struct {
			Domains []struct {
				Name    string `json:"name"`
				Routing *struct {
					State     string `json:"state"`
					Candidate int    `json:"candidate_version"`
					Serving   int    `json:"serving_version"`
				} `json:"routing"`
			} `json:"domains"`
		}
		status, body, err := b.ctl.GetTimeout(nil, url, requestTimeout)
		if err == nil && status != fasthttp.StatusOK {
			err = fmt.Errorf("status %d: %.200s", status, body)
		}
		if err == nil {
			err = json.Unmarshal(body, &list)
		}
		if err != nil {
			return "", fmt.Errorf("listing domains at %s: %w", url, err)
		}
		// The domain appears once the pair log's writer has stored its
		// first pairs (every 100 ms): until then, wait like for a student.
		if len(list.Domains) > 1 {
			return "", fmt.Errorf("listing domains at %s: %d domains, want 1", url, len(list.Domains))
		}
		if len(list.Domains) == 1 {
			if d := list.Domains[0]; d.Routing != nil && (d.Routing.Candidate > 0 || d.Routing.Serving > 0) {
				fmt.Fprintf(b.stderr, "student: %s has a version in the shadow\n", d.Name)
				return d.Name, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no student after %s (gateway log: %s)%s", trainTimeout, gw.logPath, gw.logTail())
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// act posts a routing action for domain to the gateway's admin API.
func (b *bench) act(gw *proc, domain, action string) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + gw.admin + "/admin/domains/" + domain + "/" + action)
	req.Header.SetMethod(fasthttp.MethodPost)
	if err := b.ctl.DoTimeout(req, resp, requestTimeout); err != nil {
		return fmt.Errorf("%s %s: %w", action, domain, err)
	}
	if st := resp.StatusCode(); st != fasthttp.StatusOK && st != fasthttp.StatusAccepted {
		return fmt.Errorf("%s %s: status %d: %.200s", action, domain, resp.StatusCode(), resp.Body())
	}
	return nil
}

// readCPU returns the CPU time (user + system) of process pid so far.
func readCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
	}
	// pid (comm) state ppid ...: utime and stime are fields 14 and 15,
	// the 12th and 13th after the command, which may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("reading CPU time of pid %d: cannot parse %.100q", pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading CPU time of pid %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// studentShare is the share of successful requests the student answered.
func (r studentRun) studentShare() float64 {
	if r.Student == nil || r.OK == 0 {
		return 0
	}
	return float64(r.Student.Student.N) / float64(r.OK)
}

func (b *bench) studentProgress(r studentRun) {
	line := fmt.Sprintf("student: repeat %d %-12s %5d req/s: %5.0f req/s, p50 %s, p99 %s, errors %d",
		r.Repeat, r.Mode, r.Rate, r.Throughput, fmtUS(r.Latency.P50), fmtUS(r.Latency.P99), r.errors())
	if r.Mode != modeDirect {
		line += fmt.Sprintf(", gateway CPU %.3f cores (scoring %.4f)", r.CPUCores, r.ScoringCores)
	}
	if r.Student != nil {
		line += fmt.Sprintf(", student answered %.1f%% (p50 %s, p99 %s; prediction p50 %s)", 100*r.studentShare(),
			fmtUS(r.Student.Student.P50), fmtUS(r.Student.Student.P99), fmtUS(r.PredictionP50))
	}
	if r.FirstError != "" {
		line += "\n    first error: " + r.FirstError
	}
	fmt.Fprintln(b.stderr, line)
}

// writeStudent reports the comparison: medians over the repeats.
func writeStudent(w io.Writer, res *results) {
	if len(res.Student) == 0 {
		return
	}
	c := res.Conditions
	by := byMode(res.Student, func(r studentRun) string { return r.Mode })
	fmt.Fprintf(w, "\n### Student at %d req/s non-streaming (median of %d)\n\n", studentRate, c.Repeat)
	fmt.Fprintf(w, "One gateway with a trained student on a learnable %d-label data set (texts of ~%d bytes), its own teacher-sim; teacher-only = domain pinned to the teacher (no shadow scoring), shadowing = every request answered by the teacher and scored by the student, serving = promoted by the admin API (`shadow_rate` 0.05), direct = the same load straight to teacher-sim. teacher-only and shadowing interleave, and so do serving and direct. CPU: the gateway's utime + stime over the measured requests; scoring: the part of it the shadow pool's workers spent scoring, read from their threads' own CPU clocks (`understudy_shadow_cpu_seconds_total`). Errors include student answers that differ from the data set's label.\n\n",
		len(labels), c.BodyBytes)
	fmt.Fprintln(w, "| mode | req/s | p50 | p99 | student answered | student p50 | student p99 | teacher p50 | teacher p99 | gateway CPU (cores) | CPU min–max | scoring (cores) | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	med := func(rs []studentRun, f func(studentRun) float64) float64 { return medianOf(rs, f) }
	for _, m := range []string{modeTeacher, modeShadow, modeServing, modeDirect} {
		rs := by[m]
		if len(rs) == 0 {
			continue
		}
		errs := errorsOf(rs)
		stud, teach := "–", "–"
		sp50, sp99, tp50, tp99 := stud, stud, teach, teach
		if rs[0].Student != nil && m != modeDirect {
			stud = fmt.Sprintf("%.1f%%", 100*med(rs, studentRun.studentShare))
			sp50 = fmtUS(med(rs, func(r studentRun) float64 { return r.Student.Student.P50 }))
			sp99 = fmtUS(med(rs, func(r studentRun) float64 { return r.Student.Student.P99 }))
			tp50 = fmtUS(med(rs, func(r studentRun) float64 { return r.Student.Other.P50 }))
			tp99 = fmtUS(med(rs, func(r studentRun) float64 { return r.Student.Other.P99 }))
		}
		cpu, cpus, scoring := "–", "–", "–"
		if m != modeDirect {
			cpu = fmt.Sprintf("%.3f", med(rs, func(r studentRun) float64 { return r.CPUCores }))
			cpus = cpuRange(rs)
			scoring = fmt.Sprintf("%.4f", med(rs, func(r studentRun) float64 { return r.ScoringCores }))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", m,
			med(rs, func(r studentRun) float64 { return r.Throughput }),
			fmtUS(med(rs, func(r studentRun) float64 { return r.Latency.P50 })),
			fmtUS(med(rs, func(r studentRun) float64 { return r.Latency.P99 })),
			stud, sp50, sp99, tp50, tp99, cpu, cpus, scoring, errs)
	}

	if rs := by[modeServing]; len(rs) > 0 && rs[0].Student != nil {
		p50 := med(rs, func(r studentRun) float64 { return r.Student.Student.P50 })
		pred := med(rs, func(r studentRun) float64 { return r.PredictionP50 })
		floor := "not measured"
		if d := by[modeDirect]; len(d) > 0 {
			floor = fmtUS(med(d, func(r studentRun) float64 { return r.Latency.P50 }))
		}
		fmt.Fprintf(w, "\nStudent-served p50 ≤ %d µs end to end: %s (%s; straight to teacher-sim in the same minutes %s; the prediction, featurizing and ONNX Runtime, p50 %s by the gateway's `%s`).\n",
			studentLatencyGoal, holds(p50 <= studentLatencyGoal), fmtUS(p50), floor, fmtUS(pred), predictionMetric)
	}
	if t, s := by[modeTeacher], by[modeShadow]; len(t) > 0 && len(s) > 0 {
		ct := med(t, func(r studentRun) float64 { return r.CPUCores })
		cs := med(s, func(r studentRun) float64 { return r.CPUCores })
		scoring := med(s, func(r studentRun) float64 { return r.ScoringCores })
		fmt.Fprintf(w, "Shadow scoring CPU within %.0f%% of teacher-only: %s (scoring %.4f cores, %s of teacher-only's %.3f).\n",
			shadowCPUTolerance*100, holds(scoring <= ct*shadowCPUTolerance), scoring, fmtPct(scoring/ct), ct)
		fmt.Fprintf(w, "The whole gateway, shadowing against teacher-only: %.3f vs %.3f cores, %s (CPU min–max %s vs %s: differences inside that spread are the machine's noise).\n",
			cs, ct, fmtPct(cs/ct-1), cpuRange(s), cpuRange(t))
	}
}

// cpuRange is the least and the most cores busy over rs.
func cpuRange(rs []studentRun) string {
	lo, hi := rs[0].CPUCores, rs[0].CPUCores
	for _, r := range rs {
		lo, hi = min(lo, r.CPUCores), max(hi, r.CPUCores)
	}
	return fmt.Sprintf("%.3f–%.3f", lo, hi)
}

func holds(ok bool) string {
	if ok {
		return "holds"
	}
	return "does NOT hold"
}
