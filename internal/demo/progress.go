package demo

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// progress draws a line per domain while the replay runs: redrawn in place
// on a terminal, printed every few seconds otherwise.
type progress struct {
	tasks []taskSpec
	out   io.Writer
	live  bool
	every time.Duration
	total int
	start time.Time
	tally *tally
	mon   *monitor
	drawn int // lines drawn last time (live mode)
}

// run draws until ctx ends, then draws a last time.
func (p *progress) run(ctx context.Context) error {
	every := p.every
	if p.live {
		every = liveRedrawEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw()
			return nil
		case <-t.C:
			p.draw()
		}
	}
}

// draw writes the current lines; on a terminal it first moves the cursor
// back over the previous ones.
func (p *progress) draw() {
	lines := p.lines()
	var b strings.Builder
	if p.live && p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn) // cursor up
	}
	for _, l := range lines {
		if p.live {
			b.WriteString("\x1b[2K") // clear the line
		}
		b.WriteString(l + "\n")
	}
	if !p.live {
		b.WriteString("\n")
	}
	p.drawn = len(lines)
	_, _ = io.WriteString(p.out, b.String())
}

// lines renders the header and a line per domain, within 80 columns.
func (p *progress) lines() []string {
	done, counts := p.tally.snapshot()
	elapsed := time.Since(p.start)
	rate := float64(done) / max(elapsed.Seconds(), 1e-3)
	out := []string{
		fmt.Sprintf("%s  %d/%d requests  %.0f req/s", clock(elapsed), done, p.total, rate),
		fmt.Sprintf(lineFormat, "domain", "reqs", "state", "offload", "agreement", "saved"),
	}
	for _, spec := range p.tasks {
		v, _, _ := p.mon.view(spec.domain)
		out = append(out, domainLine(spec.domain, counts[spec.domain], v))
	}
	return out
}

// lineFormat lays out a progress line's columns.
const lineFormat = "  %-11s %6s  %-13s %7s  %-21s %8s"

// domainLine renders one domain: requests, routing state (with the serving
// or shadowed version), offload (the share of its last answers given by a
// student), agreement and cost saved. Agreement is that of the student's
// answers with the data set once it answers; before, the gateway's shadow
// score of the student against the teacher with the lower confidence bound
// that the promotion gate checks.
func domainLine(name string, c domainTally, v domainView) string {
	state := v.State
	if state == "" {
		state = "-"
	}
	if v.Routing != nil && v.Routing.Serving > 0 {
		state += fmt.Sprintf(" v%d", v.Routing.Serving)
	} else if v.Routing != nil && v.Routing.Candidate > 0 {
		state += fmt.Sprintf(" v%d", v.Routing.Candidate)
	}
	agree := "-"
	switch {
	case c.student > 0:
		agree = fmt.Sprintf("%.1f%% (data)", 100*ratio(c.studentCorrect, c.student))
	case v.Routing != nil && v.Routing.CandidateStats != nil && v.Routing.CandidateStats.Confident > 0:
		st := v.Routing.CandidateStats
		agree = fmt.Sprintf("%.1f%% (gate lb %.1f%%)", 100*st.SelectiveAgreement, 100*st.LowerBound)
	}
	return fmt.Sprintf(lineFormat, name, strconv.Itoa(c.requests), state,
		fmt.Sprintf("%.1f%%", 100*c.recentOffload()), agree, fmt.Sprintf("$%.2f", c.saved))
}

// clock formats an elapsed time as m:ss.
func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
