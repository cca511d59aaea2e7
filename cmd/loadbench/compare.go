package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"
)

// The pair-logging comparison: the gateway at goalRate, non-streaming, with
// pair logging on and off, each run on a fresh gateway process and data
// directory so that neither mode inherits the other's database or heap.

// Storage metrics of the gateway.
const (
	pairsLoggedMetric  = "understudy_storage_pairs_logged_total"
	pairsDroppedMetric = "understudy_storage_pairs_dropped_total"
	queueLengthMetric  = "understudy_storage_queue_length"
)

const (
	// loggingOnEnv and loggingOffEnv turn the gateway's pair logging on
	// (its default, set in case the environment says otherwise) and off.
	loggingOnEnv  = "UNDERSTUDY_STORAGE_ENABLED=true"
	loggingOffEnv = "UNDERSTUDY_STORAGE_ENABLED=false"
	// loggingTolerance is how much the overhead p99 may grow with logging.
	loggingTolerance = 0.10
	// drainTimeout bounds the wait for the pair writer's queue to empty.
	drainTimeout = 10 * time.Second
)

// loggingRun is one run of the comparison.
type loggingRun struct {
	Repeat  int  `json:"repeat"`
	Logging bool `json:"logging"`
	Rate    int  `json:"rate"`
	loadResult
	Overhead *overhead `json:"overhead"`
	// Memory after the run; its peak is the run's own when PeakReset, else
	// since the gateway started.
	Memory    memory `json:"gateway_memory"`
	PeakReset bool   `json:"peak_reset"`
	// Requests is every request of the load, warmup included.
	Requests int64 `json:"requests"`
	// Pairs logged and dropped during the load, read once the writer's
	// queue had drained, DrainSeconds after the load ended.
	pairCounts
	DrainSeconds float64 `json:"drain_seconds"`
}

// pairCounts are the pairs a run logged and dropped (by reason), read
// once the writer's queue had drained (Drained false: it had not by
// drainTimeout).
type pairCounts struct {
	PairsLogged  float64            `json:"pairs_logged"`
	PairsDropped map[string]float64 `json:"pairs_dropped"`
	Drained      bool               `json:"drained"`
}

// between sets the counts to what was logged and dropped from before to
// after.
func (c *pairCounts) between(before, after storageSample, drained bool) {
	c.Drained = drained
	c.PairsLogged = after.logged - before.logged
	c.PairsDropped = maps.Clone(after.dropped)
	for k, v := range before.dropped {
		c.PairsDropped[k] -= v
	}
}

func (c pairCounts) dropped() float64 {
	var n float64
	for _, v := range c.PairsDropped {
		n += v
	}
	return n
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// runLoggingCompare runs the comparison -repeat times, alternating which
// mode goes first, and adds its runs to the results.
func (b *bench) runLoggingCompare(ctx context.Context) error {
	return b.alternate(func(n, total, repeat int, on bool) error {
		lr, err := b.runLogging(ctx, repeat, on)
		if err != nil {
			return fmt.Errorf("comparing pair logging at %d req/s (logging %s, repeat %d): %w", goalRate, onOff(on), repeat, err)
		}
		b.res.Logging = append(b.res.Logging, lr)
		b.loggingProgress(n, total, lr)
		return nil
	})
}

// alternate runs an on/off comparison -repeat times, on first in odd
// repeats and off first in even ones, calling run with the run's number,
// the total, the repeat (from 1) and the mode.
func (b *bench) alternate(run func(n, total, repeat int, on bool) error) error {
	n, total := 0, 2*b.o.repeat
	for r := range b.o.repeat {
		order := []bool{true, false}
		if r%2 == 1 {
			order = []bool{false, true}
		}
		for _, on := range order {
			n++
			if err := run(n, total, r+1, on); err != nil {
				return err
			}
		}
	}
	return nil
}

// runLogging starts a gateway with pair logging on or off and a fresh data
// directory, loads it at goalRate and stops it.
func (b *bench) runLogging(ctx context.Context, repeat int, on bool) (lr loggingRun, err error) {
	lr = loggingRun{Repeat: repeat, Logging: on, Rate: goalRate}
	name := fmt.Sprintf("gateway-logging-%s-%d", onOff(on), repeat)
	dataDir, err := os.MkdirTemp(b.dir, name+"-data-")
	if err != nil {
		return lr, fmt.Errorf("creating a data directory: %w", err)
	}
	defer os.RemoveAll(dataDir)
	env := loggingOnEnv
	if !on {
		env = loggingOffEnv
	}
	gw, err := b.startChecked(ctx, name, dataDir, []string{env})
	if err != nil {
		return lr, err
	}
	defer func() { err = errors.Join(err, gw.stop()) }()
	client := newClient(gw.addr, b.o.conns)
	defer client.CloseIdleConnections()
	url := "http://" + gw.addr + "/v1/chat/completions"
	var want float64 // the check's pair, once written
	if on {
		want = 1
	}
	before, _, err := b.waitDrained(ctx, gw.addr, want)
	if err != nil {
		return lr, err
	}

	lr.PeakReset = resetPeak(gw.pid()) == nil
	l := startLoad(ctx, client, url, b.ds.bodies, b.ds.want, goalRate, b.o.warmup, b.o.duration, b.o.conns)
	if lr.loadResult, lr.Overhead, err = b.waitOverhead(ctx, l, gw.addr); err != nil {
		return lr, err
	}
	ended := time.Now()
	lr.Requests = l.total
	if on {
		want = before.total() + float64(l.total)
	}
	after, drained, err := b.waitDrained(ctx, gw.addr, want)
	if err != nil {
		return lr, err
	}
	lr.DrainSeconds = time.Since(ended).Seconds()
	lr.between(before, after, drained)
	if lr.Memory, err = readMemory(gw.pid()); err != nil {
		return lr, err
	}
	return lr, nil
}

// storageSample is one scrape of the gateway's storage metrics.
type storageSample struct {
	logged  float64
	dropped map[string]float64 // by label set, e.g. `reason="queue_full"`
	queue   float64
}

func (s storageSample) total() float64 {
	n := s.logged
	for _, v := range s.dropped {
		n += v
	}
	return n
}

// waitDrained scrapes the gateway's storage metrics until its writer's
// queue is empty and at least want pairs were logged or dropped, or
// drainTimeout passes; drained says which. Pairs are logged after their
// answer is sent, so the count can trail the client by a moment.
func (b *bench) waitDrained(ctx context.Context, addr string, want float64) (s storageSample, drained bool, err error) {
	deadline := time.Now().Add(drainTimeout)
	for {
		body, err := b.scrape(addr)
		if err != nil {
			return s, false, err
		}
		s.dropped, err = parseSamples(body, pairsDroppedMetric)
		if err != nil {
			return s, false, err
		}
		logged, err := parseSamples(body, pairsLoggedMetric)
		if err != nil {
			return s, false, err
		}
		queue, err := parseSamples(body, queueLengthMetric)
		if err != nil {
			return s, false, err
		}
		s.logged, s.queue = logged[""], queue[""]
		if s.queue == 0 && s.total() >= want {
			return s, true, nil
		}
		if time.Now().After(deadline) {
			return s, false, nil
		}
		select {
		case <-ctx.Done():
			return s, false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loggingProgress prints one line per finished comparison run to stderr.
func (b *bench) loggingProgress(n, total int, lr loggingRun) {
	line := fmt.Sprintf("[logging %d/%d] repeat %d chat %5d req/s logging %-3s: %5.0f req/s, p50 %s, p99 %s, errors %d, overhead p50 %s p99 %s, pairs logged %.0f of %d requests, dropped %.0f",
		n, total, lr.Repeat, lr.Rate, onOff(lr.Logging), lr.Throughput,
		fmtUS(lr.Latency.P50), fmtUS(lr.Latency.P99), lr.errors(),
		fmtUS(float64(lr.Overhead.P50)), fmtUS(float64(lr.Overhead.P99)),
		lr.PairsLogged, lr.Requests, lr.dropped())
	if !lr.Drained {
		line += fmt.Sprintf(" (queue not drained after %s)", drainTimeout)
	}
	if lr.FirstError != "" {
		line += "\n    first error: " + lr.FirstError
	}
	fmt.Fprintln(b.stderr, line)
}
