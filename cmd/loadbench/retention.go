package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/understudy-dev/understudy/storage"
)

// The retention comparison: the gateway at -retention-rate with a full pair
// log, with and without retention deleting a large excess while the
// requests are measured (issue 20: a 5-minute pass that deleted 475,000
// pairs at once stalled the gateway for 50–450 ms). Each run pre-fills a
// fresh data directory with retentionCap + -retention-excess pairs in the
// load's own domain, then starts a gateway on it with a retention interval
// of retentionInterval, so that its first pass begins about a second into
// the measured requests. Retention on: the default cap, retentionCap;
// off: a cap above what the log holds, so that the passes find nothing.
// The two modes interleave over -repeat.

const (
	// retentionCap is the gateway's default storage.max_pairs_per_domain.
	retentionCap = 200_000
	// retentionOffCap is far above what a run stores.
	retentionOffCap = 100_000_000
	// retentionSettle: the gateway is left idle this long after it starts,
	// while Badger compacts the pre-filled tables; measured without it, the
	// first seconds of both modes were slow.
	retentionSettle = 5 * time.Second
	// retentionInterval: the first pass comes this long after the gateway
	// opens its pair log (min(interval, 30s)), later ones this long after
	// the previous one ends: here the first begins about a second into the
	// measured requests (after retentionSettle and -warmup's 2 s).
	retentionInterval = 8 * time.Second
	// retentionWindow: the client p99 is also reported per window of the
	// measured requests, to show whether it stays flat.
	retentionWindow = 5 * time.Second
	// retentionSample: how often the deletions are scraped.
	retentionSample = 500 * time.Millisecond

	retentionDeletedMetric = "understudy_storage_retention_deleted_total"
)

// retentionRun is one run of the comparison.
type retentionRun struct {
	Repeat    int  `json:"repeat"`
	Retention bool `json:"retention"`
	Rate      int  `json:"rate"`
	loadResult
	Overhead  *overhead `json:"overhead"`
	Memory    memory    `json:"gateway_memory"`
	PeakReset bool      `json:"peak_reset"`
	// Prefilled is the pairs stored before the gateway started; Cap its
	// storage.max_pairs_per_domain.
	Prefilled int `json:"prefilled_pairs"`
	Cap       int `json:"cap"`
	// Deleted is the pairs retention deleted during the measured requests
	// and DeletedBy the count at each retentionSample into them: passes
	// come every retentionInterval, the first with the whole excess.
	Deleted   float64   `json:"deleted_pairs"`
	DeletedBy []float64 `json:"deleted_by_sample,omitempty"`
	// PairsAfter is the domain's stored pairs when the load ended.
	PairsAfter int64 `json:"pairs_after"`
}

// deleteRate is the pairs deleted per second over the samples in which
// retention was deleting, and peakRate the most in one sample.
func (r retentionRun) deleteRate() (mean, peak float64) {
	var busy int
	prev := 0.0
	for _, n := range r.DeletedBy {
		if d := n - prev; d > 0 {
			busy++
			peak = max(peak, d/retentionSample.Seconds())
		}
		prev = n
	}
	if busy > 0 {
		mean = r.Deleted / (float64(busy) * retentionSample.Seconds())
	}
	return mean, peak
}

// worstWindowP99 is the highest client p99 of the run's windows.
func (r retentionRun) worstWindowP99() float64 {
	var w float64
	for _, s := range r.Windows {
		w = max(w, s.P99)
	}
	return w
}

// runRetentionCompare runs the comparison -repeat times, alternating which
// mode goes first, and adds its runs to the results.
func (b *bench) runRetentionCompare(ctx context.Context) error {
	domain, err := b.loadDomain(ctx)
	if err != nil {
		return err
	}
	return b.alternate(func(n, total, repeat int, on bool) error {
		rr, err := b.runRetention(ctx, repeat, on, domain)
		if err != nil {
			return fmt.Errorf("comparing retention at %d req/s (retention %s, repeat %d): %w", b.o.retentionRate, onOff(on), repeat, err)
		}
		b.res.Retention = append(b.res.Retention, rr)
		b.retentionProgress(n, total, rr)
		return nil
	})
}

// loadDomain returns the domain the gateway logs the load's requests in: it
// starts a gateway on an empty data directory, sends one request and lists
// the domains.
func (b *bench) loadDomain(ctx context.Context) (name string, err error) {
	dataDir, err := os.MkdirTemp(b.dir, "gateway-domain-data-")
	if err != nil {
		return "", fmt.Errorf("creating a data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	gw, err := b.startChecked(ctx, "gateway-domain", dataDir, nil)
	if err != nil {
		return "", err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()
	if _, _, err := b.waitDrained(ctx, gw.addr, 1); err != nil {
		return "", err
	}
	ds, err := b.domains(gw)
	if err != nil {
		return "", err
	}
	if len(ds) != 1 {
		return "", fmt.Errorf("listing the domains of gateway-domain: %d domains after one request, want 1", len(ds))
	}
	return ds[0].Name, nil
}

type domainPairs struct {
	Name  string `json:"name"`
	Pairs int64  `json:"pairs"`
}

// domains lists the gateway's domains through its admin API.
func (b *bench) domains(gw *proc) ([]domainPairs, error) {
	url := "http://" + gw.admin + "/admin/domains"
	status, body, err := b.ctl.GetTimeout(nil, url, requestTimeout)
	if err == nil && status != 200 {
		err = fmt.Errorf("status %d: %.200s", status, body)
	}
	var list struct {
		Domains []domainPairs `json:"domains"`
	}
	if err == nil {
		err = json.Unmarshal(body, &list)
	}
	if err != nil {
		return nil, fmt.Errorf("listing domains at %s: %w", url, err)
	}
	return list.Domains, nil
}

// prefill stores n pairs in domain, in the pair log of a gateway with data
// directory dataDir, as the gateway would have logged them for the load's
// requests. It syncs the filesystems and frees its memory afterwards, so
// that neither the kernel writing back its pages nor the load generator's
// garbage collector lands in the measured requests.
func (b *bench) prefill(dataDir, domain string, n int) error {
	// The gateway's pair log is data_dir/db (cmd/understudy).
	db, err := storage.Open(storage.Options{Dir: filepath.Join(dataDir, "db"), LogOptions: storage.LogOptions{MaxPairsPerDomain: -1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fmt.Errorf("pre-filling the pair log: %w", err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	texts := make([]string, min(n, 4096))
	for i := range texts {
		texts[i] = makeText(rng, i, b.o.bodyBytes, "")
	}
	start := time.Now().Add(-time.Hour)
	for i := range n {
		label := labels[i%len(labels)]
		p := storage.Pair{Domain: domain, Model: "teacher-sim", System: systemPrompt, Input: texts[i%len(texts)],
			Answer: label, Label: label, Time: start.Add(time.Duration(i) * time.Millisecond / 200)}
		for !db.Log(p) {
			time.Sleep(50 * time.Microsecond) // the queue is full: wait for the writer
		}
	}
	err = db.Flush(context.Background())
	if err = errors.Join(err, db.Close()); err != nil {
		return fmt.Errorf("pre-filling the pair log: %w", err)
	}
	syscall.Sync()
	debug.FreeOSMemory()
	return nil
}

// runRetention pre-fills a fresh data directory, starts a gateway on it
// with retention on or off, loads it at -retention-rate and stops it.
func (b *bench) runRetention(ctx context.Context, repeat int, on bool, domain string) (rr retentionRun, err error) {
	rr = retentionRun{Repeat: repeat, Retention: on, Rate: b.o.retentionRate,
		Prefilled: retentionCap + b.o.retentionExcess, Cap: retentionOffCap}
	if on {
		rr.Cap = retentionCap
	}
	name := fmt.Sprintf("gateway-retention-%s-%d", onOff(on), repeat)
	dataDir, err := os.MkdirTemp(b.dir, name+"-data-")
	if err != nil {
		return rr, fmt.Errorf("creating a data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	if err := b.prefill(dataDir, domain, rr.Prefilled); err != nil {
		return rr, err
	}
	env := []string{
		"UNDERSTUDY_STORAGE_MAX_PAIRS_PER_DOMAIN=" + strconv.Itoa(rr.Cap),
		"UNDERSTUDY_STORAGE_RETENTION_INTERVAL=" + retentionInterval.String(),
	}
	gw, err := b.startChecked(ctx, name, dataDir, env)
	if err != nil {
		return rr, err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()
	client := newClient(gw.addr, b.o.conns)
	defer client.CloseIdleConnections()
	url := "http://" + gw.addr + "/v1/chat/completions"

	select {
	case <-time.After(retentionSettle):
	case <-ctx.Done():
		return rr, ctx.Err()
	}
	rr.PeakReset = resetPeak(gw.pid()) == nil
	l := startLoad(ctx, client, url, b.ds.bodies, b.ds.want, rr.Rate, b.o.warmup, b.o.retentionDuration, b.o.conns)
	l.window = retentionWindow
	// Sample the deletions while the load runs; the sampler ends before
	// the load's results are read.
	stop, sampled := make(chan struct{}), make(chan error, 1)
	go func() { sampled <- b.sampleDeletions(gw.addr, l.measureStart(), stop, &rr) }()
	rr.loadResult, rr.Overhead, err = b.waitOverhead(ctx, l, gw.addr)
	close(stop)
	if serr := <-sampled; err == nil {
		err = serr
	}
	if err != nil {
		return rr, err
	}
	if rr.Memory, err = readMemory(gw.pid()); err != nil {
		return rr, err
	}
	ds, err := b.domains(gw)
	if err != nil {
		return rr, err
	}
	for _, d := range ds {
		if d.Name == domain {
			rr.PairsAfter = d.Pairs
		}
	}
	return rr, nil
}

// sampleDeletions scrapes the gateway's deleted-pairs counter every
// retentionSample from measureStart until stop is closed, noting in rr how
// many pairs were deleted by then.
func (b *bench) sampleDeletions(addr string, measureStart time.Time, stop <-chan struct{}, rr *retentionRun) error {
	read := func() (float64, error) {
		body, err := b.scrape(addr)
		if err != nil {
			return 0, err
		}
		s, err := parseSamples(body, retentionDeletedMetric)
		if err != nil {
			return 0, err
		}
		var n float64
		for _, v := range s {
			n += v
		}
		return n, nil
	}
	select {
	case <-time.After(time.Until(measureStart)):
	case <-stop:
		return nil
	}
	first, err := read()
	if err != nil {
		return err
	}
	t := time.NewTicker(retentionSample)
	defer t.Stop()
	for {
		var done bool
		select {
		case <-t.C:
		case <-stop:
			done = true
		}
		n, err := read()
		if err != nil {
			return err
		}
		rr.Deleted = n - first
		if done {
			return nil
		}
		rr.DeletedBy = append(rr.DeletedBy, rr.Deleted)
	}
}

// retentionProgress prints one line per finished comparison run to stderr.
func (b *bench) retentionProgress(n, total int, rr retentionRun) {
	mean, peak := rr.deleteRate()
	line := fmt.Sprintf("[retention %d/%d] repeat %d chat %5d req/s retention %-3s: %5.0f req/s, p50 %s, p99 %s (worst %s window %s), errors %d, overhead p99 %s, peak RSS %s, deleted %.0f (%.0f/s while deleting, peak %.0f/s), pairs after %d",
		n, total, rr.Repeat, rr.Rate, onOff(rr.Retention), rr.Throughput,
		fmtUS(rr.Latency.P50), fmtUS(rr.Latency.P99), retentionWindow, fmtUS(rr.worstWindowP99()), rr.errors(),
		fmtUS(float64(rr.Overhead.P99)), fmtBytes(rr.Memory.Peak),
		rr.Deleted, mean, peak, rr.PairsAfter)
	if rr.FirstError != "" {
		line += "\n    first error: " + rr.FirstError
	}
	fmt.Fprintln(b.stderr, line)
}

// writeRetention writes the comparison's table.
func writeRetention(w io.Writer, res *results) {
	if len(res.Retention) == 0 {
		return
	}
	c := res.Conditions
	var on, off []retentionRun
	for _, r := range res.Retention {
		if r.Retention {
			on = append(on, r)
		} else {
			off = append(off, r)
		}
	}
	fmt.Fprintf(w, "\n### Retention with a full pair log at %d req/s non-streaming (median of %d)\n\n", c.RetentionRate, c.Repeat)
	fmt.Fprintf(w, "Each run pre-fills a fresh data directory with %d pairs (%d over the default cap of %d) in the load's domain and starts a gateway on it with `storage.retention_interval` %s, left idle for %s: its first pass begins about %s into the %gs of measured requests. Retention on: cap %d; off: cap %d (the passes find nothing to delete). The modes interleave; the phases' gateway is stopped. ",
		retentionCap+c.RetentionExcess, c.RetentionExcess, retentionCap, retentionInterval, retentionSettle,
		retentionInterval-retentionSettle-time.Duration(c.Warmup*float64(time.Second)), c.RetentionDuration, retentionCap, retentionOffCap)
	fmt.Fprintf(w, "worst window p99: the highest client p99 of the %s windows of a run. deleted: pairs deleted during the measured requests (`%s`, scraped every %s); deleting: their rate over the samples in which some were deleted, and the highest of one sample. peak RSS: VmHWM during the run, max over repeats. pairs after: the domain's pairs when the load ended (cap %d when on).\n\n",
		retentionWindow, retentionDeletedMetric, retentionSample, retentionCap)
	fmt.Fprintln(w, "| retention | req/s | p50 | p99 | p99.9 | worst window p99 | p99 min–max | overhead p99 | peak RSS | errors | deleted | deleting | peak deleting | pairs after |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, m := range []struct {
		name string
		rs   []retentionRun
	}{{"on", on}, {"off", off}} {
		var peak int64
		for _, r := range m.rs {
			peak = max(peak, r.Memory.Peak)
		}
		errs := errorsOf(m.rs)
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %d | %.0f | %.0f/s | %.0f/s | %.0f |\n", m.name,
			medianOf(m.rs, func(r retentionRun) float64 { return r.Throughput }),
			fmtUS(medianOf(m.rs, func(r retentionRun) float64 { return r.Latency.P50 })),
			fmtUS(medianOf(m.rs, func(r retentionRun) float64 { return r.Latency.P99 })),
			fmtUS(medianOf(m.rs, func(r retentionRun) float64 { return r.Latency.P999 })),
			fmtUS(medianOf(m.rs, retentionRun.worstWindowP99)),
			fmtRange(m.rs, func(r retentionRun) float64 { return r.Latency.P99 }),
			fmtUS(medianOf(m.rs, func(r retentionRun) float64 { return float64(r.Overhead.P99) })),
			fmtBytes(peak), errs,
			medianOf(m.rs, func(r retentionRun) float64 { return r.Deleted }),
			medianOf(m.rs, func(r retentionRun) float64 { mean, _ := r.deleteRate(); return mean }),
			medianOf(m.rs, func(r retentionRun) float64 { _, peak := r.deleteRate(); return peak }),
			medianOf(m.rs, func(r retentionRun) float64 { return float64(r.PairsAfter) }))
	}
	fmt.Fprintf(w, "\nClient p99 per %s window, each run in order:\n\n", retentionWindow)
	for _, r := range res.Retention {
		fmt.Fprintf(w, "- retention %s, repeat %d:", onOff(r.Retention), r.Repeat)
		for _, s := range r.Windows {
			fmt.Fprintf(w, " %s", fmtUS(s.P99))
		}
		fmt.Fprintln(w)
	}
}
