package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
)

// Goal of the issue, for non-streaming requests at goalRate.
const (
	goalRate    = 2000
	goalP50     = 100   // µs of gateway overhead
	goalP99     = 1000  // µs of gateway overhead
	goalRSSByte = 100e6 // peak RSS
)

// writeJSON writes the results to path, indented.
func writeJSON(path string, res *results) error {
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// runs are the repeats of one phase against one target, in order.
type runs []phaseResult

func (rs runs) med(f func(phaseResult) float64) float64 { return medianOf(rs, f) }

// medianOf is the median of f over xs, NaN for none.
func medianOf[T any](xs []T, f func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	return median(vs)
}

func (rs runs) errors() int { return errorsOf(rs) }

// errorsOf sums the errors of runs.
func errorsOf[T interface{ errors() int }](rs []T) int {
	n := 0
	for _, r := range rs {
		n += r.errors()
	}
	return n
}

// byMode groups runs by their mode.
func byMode[T any](rs []T, mode func(T) string) map[string][]T {
	by := map[string][]T{}
	for _, r := range rs {
		by[mode(r)] = append(by[mode(r)], r)
	}
	return by
}

// group collects the results by phase and target.
func group(res *results) map[phase]map[string]runs {
	g := map[phase]map[string]runs{}
	for _, pr := range res.Phases {
		if g[pr.phase] == nil {
			g[pr.phase] = map[string]runs{}
		}
		g[pr.phase][pr.Target] = append(g[pr.phase][pr.Target], pr)
	}
	return g
}

// phaseOrder lists the phases of a run in the order they ran.
func phaseOrder(c conditions) []phase {
	var ps []phase
	for _, r := range c.Rates {
		ps = append(ps, phase{Rate: r})
	}
	if c.Stream {
		ps = append(ps, phase{Rate: c.StreamRate, Stream: true})
	}
	return ps
}

// writeReport writes the conditions and result tables as Markdown.
func writeReport(w io.Writer, res *results) {
	c := res.Conditions
	g := group(res)
	phases := phaseOrder(c)
	writeConditions(w, c)

	fmt.Fprintf(w, "\n### Client latency (median of %d)\n\n", c.Repeat)
	fmt.Fprintln(w, "| rate | mode | target | req/s | p50 | p99 | p99.9 | errors |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|---:|---:|---:|")
	for _, ph := range phases {
		for _, t := range []string{direct, gateway} {
			rs := g[ph][t]
			fmt.Fprintf(w, "| %d | %s | %s | %.0f | %s | %s | %s | %d |\n", ph.Rate, ph.mode(), t,
				rs.med(func(r phaseResult) float64 { return r.Throughput }),
				fmtUS(rs.med(func(r phaseResult) float64 { return r.Latency.P50 })),
				fmtUS(rs.med(func(r phaseResult) float64 { return r.Latency.P99 })),
				fmtUS(rs.med(func(r phaseResult) float64 { return r.Latency.P999 })),
				rs.errors())
		}
	}

	fmt.Fprintln(w, "\n### Gateway overhead")
	fmt.Fprintln(w, "\nadded: gateway − direct at each percentile, paired by repeat, median.")
	fmt.Fprintf(w, "histogram: `%s` (total − teacher time), bucket deltas over the measured requests, interpolated like histogram_quantile, median.\n", overheadMetric)
	fmt.Fprintln(w, "peak RSS: the gateway's VmHWM during the phase, max over repeats.")
	fmt.Fprintln(w, "\n| rate | mode | added p50 | added p99 | added p99.9 | hist p50 | hist p99 | hist p99.9 | hist n | peak RSS |")
	fmt.Fprintln(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, ph := range phases {
		d, gw := g[ph][direct], g[ph][gateway]
		added := func(f func(latencySummary) float64) string {
			xs := make([]float64, 0, len(gw))
			for i := range min(len(d), len(gw)) {
				xs = append(xs, f(gw[i].Latency)-f(d[i].Latency))
			}
			return fmtUS(median(xs))
		}
		hist := func(f func(*overhead) float64) float64 {
			return gw.med(func(r phaseResult) float64 { return f(r.Overhead) })
		}
		var peak int64
		reset := true
		for _, r := range gw {
			peak = max(peak, r.Memory.Peak)
			reset = reset && r.PeakReset
		}
		peakStr := fmtBytes(peak)
		if !reset {
			peakStr += " (since start)"
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |\n", ph.Rate, ph.mode(),
			added(func(l latencySummary) float64 { return l.P50 }),
			added(func(l latencySummary) float64 { return l.P99 }),
			added(func(l latencySummary) float64 { return l.P999 }),
			fmtUS(hist(func(o *overhead) float64 { return float64(o.P50) })),
			fmtUS(hist(func(o *overhead) float64 { return float64(o.P99) })),
			fmtUS(hist(func(o *overhead) float64 { return float64(o.P999) })),
			hist(func(o *overhead) float64 { return o.Count }),
			peakStr)
	}
	fmt.Fprintf(w, "\nGateway RSS: %s at the end, peak %s over the run (VmHWM).\n",
		fmtBytes(res.FinalMemory.RSS), fmtBytes(res.PeakRSS))
	writeGoal(w, res, g[phase{Rate: goalRate}][gateway])
	writeLogging(w, res)
	writeRetention(w, res)
	writeStudent(w, res)
}

func writeConditions(w io.Writer, c conditions) {
	gmp := "unset"
	if c.EnvGOMAXPROCS != "" {
		gmp = c.EnvGOMAXPROCS
	}
	cpu := ""
	if c.CPUModel != "" {
		cpu = " (" + c.CPUModel + ")"
	}
	stream := ""
	if c.Stream {
		stream = fmt.Sprintf("; plus a streaming phase at %d req/s", c.StreamRate)
	}
	fmt.Fprintln(w, "## Understudy load benchmark")
	fmt.Fprintf(w, "\n- Machine: %d CPUs%s, %s; loadbench GOMAXPROCS %d (env GOMAXPROCS %s, inherited by the servers); %s; understudy %s; %s.\n",
		c.CPUs, cpu, c.Platform, c.GOMAXPROCS, gmp, c.GoVersion, c.Understudy, c.Date)
	fmt.Fprintln(w, "- The load generator, teacher-sim (zero latency) and the gateway run on this same machine, over loopback. The gateway has its default settings: pair logging on, data in a temporary directory.")
	fmt.Fprintf(w, "- Open loop at fixed rates, %d connections. Latency runs from the scheduled send time when no worker was free (queueing counts), else from the actual send (Go timer oversleep, up to ~1 ms, is the generator's; `-json` has it as send_lag_us). Each phase: %gs warmup (not measured), then %gs measured; %d repeat(s), direct and gateway interleaved.\n",
		c.Conns, c.Warmup, c.Duration, c.Repeat)
	fmt.Fprintf(w, "- Requests: non-streaming chat completions, system prompt plus a user message of about %d bytes, %d texts round-robin%s. An error is a transport error, a status other than 200 or a wrong label.\n",
		c.BodyBytes, c.Examples, stream)
}

// writeGoal states whether the goal at goalRate was met, if that rate ran.
func writeGoal(w io.Writer, res *results, gw runs) {
	if len(gw) == 0 {
		return
	}
	p50 := gw.med(func(r phaseResult) float64 { return float64(r.Overhead.P50) })
	p99 := gw.med(func(r phaseResult) float64 { return float64(r.Overhead.P99) })
	errs := gw.errors()
	var checks []string
	ok := true
	check := func(pass bool, s string) {
		mark := "ok"
		if !pass {
			mark, ok = "MISSED", false
		}
		checks = append(checks, s+" "+mark)
	}
	check(p50 <= goalP50, fmt.Sprintf("overhead p50 %s ≤ %s", fmtUS(p50), fmtUS(goalP50)))
	check(p99 <= goalP99, fmt.Sprintf("p99 %s ≤ %s", fmtUS(p99), fmtUS(goalP99)))
	check(errs == 0, fmt.Sprintf("errors %d = 0", errs))
	check(float64(res.PeakRSS) <= goalRSSByte, fmt.Sprintf("peak RSS %s ≤ %s", fmtBytes(res.PeakRSS), fmtBytes(goalRSSByte)))
	verdict := "met"
	if !ok {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "\nGoal at %d req/s non-streaming %s: %s.\n", goalRate, verdict, strings.Join(checks, ", "))
}

// fmtUS formats microseconds with a unit that fits.
func fmtUS(us float64) string {
	switch a := math.Abs(us); {
	case math.IsNaN(us):
		return "n/a"
	case a < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case a < 1e6:
		return fmt.Sprintf("%.2f ms", us/1e3)
	default:
		return fmt.Sprintf("%.2f s", us/1e6)
	}
}

func fmtBytes(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// writeLogging writes the pair-logging comparison, if it ran, and whether
// the overhead p99 with logging stayed within loggingTolerance of the p99
// without.
func writeLogging(w io.Writer, res *results) {
	if len(res.Logging) == 0 {
		return
	}
	c := res.Conditions
	var on, off []loggingRun
	for _, r := range res.Logging {
		if r.Logging {
			on = append(on, r)
		} else {
			off = append(off, r)
		}
	}
	fmt.Fprintf(w, "\n### Pair logging at %d req/s non-streaming (median of %d)\n\n", goalRate, c.Repeat)
	fmt.Fprintf(w, "Each run starts a fresh gateway with an empty data directory, pair logging on (the default) or off (`%s`), the two modes interleaved; the phases' gateway is stopped, teacher-sim and the load are as above. ", loggingOffEnv)
	fmt.Fprintf(w, "overhead: `%s` over the measured requests, as above. peak RSS: VmHWM during the run, max over repeats. ", overheadMetric)
	fmt.Fprintf(w, "pairs: deltas of `%s` and `%s` over all the run's requests (warmup included), read once `%s` was back to 0.\n\n",
		pairsLoggedMetric, pairsDroppedMetric, queueLengthMetric)
	fmt.Fprintln(w, "| pair logging | req/s | p50 | p99 | p99.9 | overhead p50 | overhead p99 | overhead p99.9 | overhead p99 min–max | peak RSS | errors | pairs logged | pairs dropped |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	type quantiles struct{ p50, p99, p999, h50, h99, h999 float64 }
	meds := func(rs []loggingRun) quantiles {
		return quantiles{
			p50:  medianOf(rs, func(r loggingRun) float64 { return r.Latency.P50 }),
			p99:  medianOf(rs, func(r loggingRun) float64 { return r.Latency.P99 }),
			p999: medianOf(rs, func(r loggingRun) float64 { return r.Latency.P999 }),
			h50:  medianOf(rs, func(r loggingRun) float64 { return float64(r.Overhead.P50) }),
			h99:  medianOf(rs, func(r loggingRun) float64 { return float64(r.Overhead.P99) }),
			h999: medianOf(rs, func(r loggingRun) float64 { return float64(r.Overhead.P999) }),
		}
	}
	qOn, qOff := meds(on), meds(off)
	for _, m := range []struct {
		name string
		rs   []loggingRun
		q    quantiles
	}{{"on", on, qOn}, {"off", off, qOff}} {
		s := loggingSums(m.rs)
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.0f of %d | %s |\n", m.name,
			medianOf(m.rs, func(r loggingRun) float64 { return r.Throughput }),
			fmtUS(m.q.p50), fmtUS(m.q.p99), fmtUS(m.q.p999), fmtUS(m.q.h50), fmtUS(m.q.h99), fmtUS(m.q.h999),
			fmtRange(m.rs, func(r loggingRun) float64 { return float64(r.Overhead.P99) }),
			fmtBytes(s.peak), s.errors, s.logged, s.requests, s.droppedString())
	}
	fmt.Fprintf(w, "| on − off | | %s | %s | %s | %s | %s | %s | | | | | |\n",
		fmtUS(qOn.p50-qOff.p50), fmtUS(qOn.p99-qOff.p99), fmtUS(qOn.p999-qOff.p999),
		fmtUS(qOn.h50-qOff.h50), fmtUS(qOn.h99-qOff.h99), fmtUS(qOn.h999-qOff.h999))

	// The verdict.
	limit := qOff.h99 * (1 + loggingTolerance)
	verdict := "holds"
	if !(qOn.h99 <= limit) {
		verdict = "does NOT hold"
	}
	fmt.Fprintf(w, "\nOverhead p99 with logging within %.0f%% of without: %s (%s with, %s without, %s; limit %s).\n",
		loggingTolerance*100, verdict, fmtUS(qOn.h99), fmtUS(qOff.h99), fmtPct(qOn.h99/qOff.h99-1), fmtUS(limit))
	s := loggingSums(on)
	pairs := "ok"
	if s.logged != float64(s.requests) || s.dropped != 0 || !s.drained {
		pairs = "MISSED"
	}
	errs := "ok"
	if tot := s.errors + loggingSums(off).errors; tot != 0 {
		errs = "MISSED"
	}
	fmt.Fprintf(w, "With logging, pairs logged %.0f of %d requests, dropped %s: %s; errors %d with, %d without: %s.\n",
		s.logged, s.requests, s.droppedString(), pairs, s.errors, loggingSums(off).errors, errs)
	fmt.Fprintf(w, "This is noisy: medians of %d runs of %gs per mode, on %d CPUs that the load generator, teacher-sim and the gateway share; %s. A difference within the spread of the runs is noise; rerun with a larger -repeat to settle a close call.\n",
		c.Repeat, c.Duration, c.CPUs, bucketNote(on, qOn.h99))
}

// loggingTotals add up the runs of one mode.
type loggingTotals struct {
	requests int64
	logged   float64
	dropped  float64
	reasons  map[string]float64
	errors   int
	peak     int64
	drained  bool
}

func loggingSums(rs []loggingRun) loggingTotals {
	t := loggingTotals{reasons: map[string]float64{}, drained: true}
	for _, r := range rs {
		t.requests += r.Requests
		t.logged += r.PairsLogged
		t.dropped += r.dropped()
		for k, v := range r.PairsDropped {
			t.reasons[k] += v
		}
		t.errors += r.errors()
		t.peak = max(t.peak, r.Memory.Peak)
		t.drained = t.drained && r.Drained
	}
	return t
}

// droppedString is the drops, with their reasons when there are any.
func (t loggingTotals) droppedString() string {
	s := fmt.Sprintf("%.0f", t.dropped)
	var rs []string
	for _, k := range slices.Sorted(maps.Keys(t.reasons)) {
		if t.reasons[k] != 0 {
			rs = append(rs, fmt.Sprintf("%s %.0f", k, t.reasons[k]))
		}
	}
	if len(rs) > 0 {
		s += " (" + strings.Join(rs, ", ") + ")"
	}
	if !t.drained {
		s += ", queue not drained"
	}
	return s
}

// bucketNote says which overhead histogram bucket p99 falls in, since the
// quantile is interpolated inside it.
func bucketNote(rs []loggingRun, p99 float64) string {
	if len(rs) == 0 || math.IsNaN(p99) {
		return "the histogram quantiles are interpolated inside buckets"
	}
	h := rs[0].Overhead.Histogram
	lo := 0.0
	for _, b := range h.Bounds {
		if b*1e6 >= p99 {
			return fmt.Sprintf("the p99 with logging lies in the histogram bucket (%s, %s] and is interpolated inside it, so it moves in coarse steps",
				fmtUS(lo*1e6), fmtUS(b*1e6))
		}
		lo = b
	}
	return "the histogram quantiles are interpolated inside buckets"
}

// fmtRange is the smallest and largest of f over rs.
func fmtRange[T any](rs []T, f func(T) float64) string {
	if len(rs) == 0 {
		return "n/a"
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rs {
		lo, hi = min(lo, f(r)), max(hi, f(r))
	}
	return fmtUS(lo) + "–" + fmtUS(hi)
}

func fmtPct(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", x*100)
}
