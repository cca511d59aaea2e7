package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
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

func (rs runs) med(f func(phaseResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

func (rs runs) errors() int {
	n := 0
	for _, r := range rs {
		n += r.errors()
	}
	return n
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
	fmt.Fprintln(w, "- The load generator, teacher-sim (zero latency) and the gateway run on this same machine, over loopback.")
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
