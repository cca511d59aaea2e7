package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// systemPrompt is teacher-sim's default system prompt for a task.
const systemPrompt = "Classify the following text. Answer with the label only."

var (
	labels = []string{"billing", "shipping", "refund", "technical", "account"}
	words  = strings.Fields(`the my order was charged twice and I would like to know why package
		arrived late damaged missing please help me reset password login fails after update invoice
		shows wrong amount card declined where is tracking number support team answered yesterday
		but problem still happens every time app crashes when I open settings page`)
)

// dataset is the generated task: its JSONL file for teacher-sim and, per
// example, the request bodies and the bytes a correct answer contains.
type dataset struct {
	path         string
	bodies       [][]byte // non-streaming chat requests
	streamBodies [][]byte // the same with "stream": true
	want         [][]byte // `"content":"<label>"`
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model    string    `json:"model"`
	Messages []message `json:"messages"`
	Stream   bool      `json:"stream,omitempty"`
}

// writeDataset writes n examples with texts of about textBytes bytes to
// dir/bench.jsonl and builds their requests. The texts are deterministic
// and say nothing about their labels, which take turns.
func writeDataset(dir string, n, textBytes int) (*dataset, error) {
	return writeTexts(filepath.Join(dir, "bench.jsonl"), n, textBytes, makeText)
}

// writeTexts writes n examples made by text to path and builds their
// requests; labels take turns.
func writeTexts(path string, n, textBytes int, text func(rng *rand.Rand, i, size int, label string) string) (*dataset, error) {
	ds := &dataset{path: path}
	f, err := os.Create(ds.path)
	if err != nil {
		return nil, fmt.Errorf("writing data set: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		label := labels[i%len(labels)]
		text := text(rng, i, textBytes, label)
		if err := enc.Encode(map[string]string{"text": text, "label": label}); err != nil {
			f.Close()
			return nil, fmt.Errorf("writing data set: %w", err)
		}
		req := chatRequest{Model: "teacher-sim", Messages: []message{
			{Role: "system", Content: systemPrompt}, {Role: "user", Content: text}}}
		body, _ := json.Marshal(req) // strings only: cannot fail
		req.Stream = true
		streamBody, _ := json.Marshal(req)
		ds.bodies = append(ds.bodies, body)
		ds.streamBodies = append(ds.streamBodies, streamBody)
		ds.want = append(ds.want, []byte(`"content":"`+label+`"`))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing data set: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing data set: %w", err)
	}
	return ds, nil
}

// makeText returns a unique text of about size bytes.
func makeText(rng *rand.Rand, i, size int, _ string) string {
	var b strings.Builder
	b.Grow(size + 16)
	b.WriteString("Ticket " + strconv.Itoa(i) + ":")
	for b.Len() < size {
		b.WriteByte(' ')
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

// load is one open-loop run at a fixed rate against one URL: warmup
// requests first, then the measured ones, scheduled back to back.
type load struct {
	client  *fasthttp.HostClient
	url     string
	bodies  [][]byte
	want    [][]byte
	rate    int64
	warmupN int64 // requests before measuring starts
	total   int64 // warmup and measured requests
	start   time.Time
	next    atomic.Int64 // next request index to send
	limit   atomic.Int64 // requests to send: total, or fewer after stopAt
	winFrom time.Time    // setWindow's
	winTo   time.Time
	lat     []time.Duration // per measured request; failed for errors
	lag     []time.Duration // per measured request: send time − scheduled time
	student []bool          // per measured request: answered by the student
	window  time.Duration   // > 0: also summarize the measured requests per window of this length
	workers []workerStats
	wg      sync.WaitGroup
}

// workerStats are one worker's counts, merged when the run ends.
type workerStats struct {
	ok, status, transport, mismatch int
	firstErr                        string
	lastDone                        time.Time
}

// failed is the latency recorded for a request that failed.
const failed = time.Duration(-1)

// startLoad starts conns workers that together send rate requests per
// second for warmup+duration, then returns. Call wait for the results.
func startLoad(ctx context.Context, client *fasthttp.HostClient, url string, bodies, want [][]byte,
	rate int, warmup, duration time.Duration, conns int) *load {
	l := &load{
		client: client, url: url, bodies: bodies, want: want, rate: int64(rate),
		warmupN: int64(warmup.Seconds() * float64(rate)),
		workers: make([]workerStats, conns),
	}
	measured := int64(duration.Seconds() * float64(rate))
	l.total = l.warmupN + measured
	l.limit.Store(l.total)
	l.lat = make([]time.Duration, measured)
	l.lag = make([]time.Duration, measured)
	l.student = make([]bool, measured)
	l.start = time.Now().Add(time.Millisecond)
	l.wg.Add(conns)
	for i := range l.workers {
		go l.work(ctx, &l.workers[i])
	}
	return l
}

// at is the scheduled send time of request i.
func (l *load) at(i int64) time.Time {
	return l.start.Add(time.Duration(i * int64(time.Second) / l.rate))
}

// stopAt ends the load early: no request scheduled at or after t is sent,
// and wait counts only those before it (at least one measured request).
func (l *load) stopAt(t time.Time) {
	n := 1 + int64(t.Sub(l.start))*l.rate/int64(time.Second)
	l.limit.Store(max(l.warmupN+1, min(n, l.total)))
}

// setWindow makes wait also summarize the measured requests scheduled in
// [from, to) apart (loadResult.Window). Call it before wait.
func (l *load) setWindow(from, to time.Time) { l.winFrom, l.winTo = from, to }

// measureStart is when the first measured request is scheduled.
func (l *load) measureStart() time.Time { return l.at(l.warmupN) }

// work sends requests until all are sent or ctx ends. Each worker takes the
// next index and sleeps until its scheduled time. The latency counts from
// the scheduled time when the worker took the index late, because every
// worker was busy: a stalled server cannot hide the queue it builds. A
// worker that was idle and slept counts from its actual send instead, since
// Go's timers wake up to about a millisecond late when the process is idle
// (the netpoller waits in whole milliseconds); that lag belongs to the load
// generator and is reported apart.
func (l *load) work(ctx context.Context, st *workerStats) {
	defer l.wg.Done()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(l.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		i := l.next.Add(1) - 1
		if i >= l.limit.Load() {
			return
		}
		at := l.at(i)
		idle := false
		if d := time.Until(at); d > 0 {
			idle = true
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		ex := int(i % int64(len(l.bodies)))
		req.SetBodyRaw(l.bodies[ex])
		sent := time.Now()
		err := l.client.Do(req, resp)
		done := time.Now()
		if i < l.warmupN {
			continue
		}
		from := at
		if idle {
			from = sent
		}
		lat := done.Sub(from)
		l.lag[i-l.warmupN] = sent.Sub(at)
		switch {
		case err != nil:
			st.transport++
			st.noteErr("transport: " + err.Error())
			lat = failed
		case resp.StatusCode() != fasthttp.StatusOK:
			st.status++
			st.noteErr(fmt.Sprintf("status %d: %.200s", resp.StatusCode(), resp.Body()))
			lat = failed
		case !bytes.Contains(resp.Body(), l.want[ex]):
			st.mismatch++
			st.noteErr(fmt.Sprintf("answer without %s: %.200s", l.want[ex], resp.Body()))
			lat = failed
		default:
			st.ok++
		}
		l.lat[i-l.warmupN] = lat
		l.student[i-l.warmupN] = string(resp.Header.Peek(routeHeader)) == routeStudent
		st.lastDone = done
	}
}

func (st *workerStats) noteErr(msg string) {
	if st.firstErr == "" {
		st.firstErr = msg
	}
}

// loadResult is what one run measured.
type loadResult struct {
	Sent       int     `json:"sent"`
	OK         int     `json:"ok"`
	Status     int     `json:"errors_status"`
	Transport  int     `json:"errors_transport"`
	Mismatch   int     `json:"errors_mismatch"`
	FirstError string  `json:"first_error,omitempty"`
	Elapsed    float64 `json:"elapsed_seconds"`
	Throughput float64 `json:"throughput_rps"` // successful responses per second
	// Latencies of successful requests (see work for where they start).
	Latency latencySummary `json:"latency_us"`
	// SendLag is how late requests were sent after their scheduled time.
	SendLag latencySummary `json:"send_lag_us"`
	// Window summarizes the successful requests scheduled in setWindow's
	// window; nil without one.
	Window *latencySummary `json:"window_us,omitempty"`
	// Windows summarizes the successful requests scheduled in each
	// consecutive window of the measured time, when asked for (load.window).
	Windows []latencySummary `json:"windows_us,omitempty"`
	// Successful requests answered by the student (X-Understudy-Route:
	// student) and by the teacher, with their latencies; only when some
	// request was answered by a student.
	Student *routeLatency `json:"by_route,omitempty"`
}

// routeLatency splits a load's latencies by who answered.
type routeLatency struct {
	Student latencySummary `json:"student_us"`
	Other   latencySummary `json:"teacher_us"`
}

// X-Understudy-Route of a student's answer.
const (
	routeHeader  = "X-Understudy-Route"
	routeStudent = "student"
)

func (r loadResult) errors() int { return r.Status + r.Transport + r.Mismatch }

// wait waits for the workers and sums up the measured requests.
func (l *load) wait(ctx context.Context) (loadResult, error) {
	l.wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadResult{}, fmt.Errorf("load interrupted: %w", err)
	}
	if n := l.limit.Load() - l.warmupN; n < int64(len(l.lat)) {
		l.lat, l.lag, l.student = l.lat[:n], l.lag[:n], l.student[:n]
	}
	r := loadResult{Sent: len(l.lat)}
	var last time.Time
	for _, st := range l.workers {
		r.OK += st.ok
		r.Status += st.status
		r.Transport += st.transport
		r.Mismatch += st.mismatch
		if r.FirstError == "" {
			r.FirstError = st.firstErr
		}
		if st.lastDone.After(last) {
			last = st.lastDone
		}
	}
	// A server that keeps up finishes the measured requests in duration; a
	// slower one takes longer and its throughput drops.
	el := max(last.Sub(l.measureStart()), time.Duration(int64(len(l.lat))*int64(time.Second)/l.rate))
	if el > 0 {
		r.Elapsed = el.Seconds()
		r.Throughput = float64(r.OK) / r.Elapsed
	}
	var byStudent, byOther []time.Duration
	for i, d := range l.lat {
		switch {
		case d == failed:
		case l.student[i]:
			byStudent = append(byStudent, d)
		default:
			byOther = append(byOther, d)
		}
	}
	if !l.winTo.IsZero() {
		var in []time.Duration
		for i, d := range l.lat {
			if at := l.at(l.warmupN + int64(i)); d != failed && !at.Before(l.winFrom) && at.Before(l.winTo) {
				in = append(in, d)
			}
		}
		w := summarize(in)
		r.Window = &w
	}
	if len(byStudent) > 0 {
		r.Student = &routeLatency{Student: summarize(byStudent), Other: summarize(byOther)}
	}
	if n := int(l.window.Seconds() * float64(l.rate)); n > 0 {
		for lo := 0; lo < len(l.lat); lo += n {
			var w []time.Duration
			for _, d := range l.lat[lo:min(lo+n, len(l.lat))] {
				if d != failed {
					w = append(w, d)
				}
			}
			r.Windows = append(r.Windows, summarize(w))
		}
	}
	ok := l.lat[:0]
	for _, d := range l.lat {
		if d != failed {
			ok = append(ok, d)
		}
	}
	r.Latency = summarize(ok)
	r.SendLag = summarize(l.lag)
	return r, nil
}
