package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/understudy-dev/understudy/gateway"
)

// statusCmd prints a summary of every domain: state, student version,
// agreement with its lower bound, coverage, offload and money saved,
// summed over the live replicas, then the replicas when there are
// several; --watch redraws it.
func statusCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status", stdout)
	client := adminFlags(fs.FlagSet)
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "refresh `interval` with --watch")
	limit := limitFlag(fs.FlagSet)
	if err := fs.parse(args); err != nil {
		return err
	}
	if *limit < 0 {
		return fs.usageError(fmt.Sprintf("--limit must not be negative, got %d", *limit))
	}
	c, err := client()
	if err != nil {
		return err
	}
	tty := false
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	for {
		ds, total, err := c.listDomains(ctx, *limit)
		if err != nil {
			return err
		}
		if *watch && tty {
			fmt.Fprint(stdout, "\033[H\033[2J") // home, clear
		}
		if *watch {
			fmt.Fprintf(stdout, "understudy status  %s  (%s)\n\n", c.base, time.Now().Format("15:04:05"))
		}
		if err := writeStatus(stdout, ds); err != nil {
			return err
		}
		if err := writeMore(stdout, len(ds), total); err != nil {
			return err
		}
		// A server from before /admin/replicas, or one that does not list
		// replicas, answers an error: it is one replica, shown as today.
		var rs gateway.ReplicasView
		if c.getJSON(ctx, "/admin/replicas", &rs) == nil {
			if err := writeReplicas(stdout, rs); err != nil {
				return err
			}
		}
		if !*watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func writeStatus(w io.Writer, ds []gateway.DomainView) error {
	tw, err := domainTable(w, len(ds), "DOMAIN\tSTATE\tSTUDENT\tτ\t"+agreementHeader+"\tCOVERAGE\t"+offloadHeader+"\tSAVED\tSPENT")
	if tw == nil {
		return err
	}
	var saved, spent float64
	var notes []string
	for _, d := range ds {
		c := cellsOf(d)
		if rv := d.Routing; rv != nil && rv.Waiting != "" {
			notes = append(notes, d.Name+": "+rv.Waiting)
		}
		saved += d.SavedDollars
		spent += d.SpentDollars
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t$%.4f\t$%.4f\n", d.Name, d.State, c.student, c.tau, c.agreement, c.coverage, c.offload, d.SavedDollars, d.SpentDollars)
	}
	fmt.Fprintf(tw, "total\t\t\t\t\t\t\t$%.4f\t$%.4f\n", saved, spent)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		if _, err := fmt.Fprintln(w, n); err != nil {
			return err
		}
	}
	return nil
}

// writeReplicas lists the live replicas when there are more than one:
// which leads (trains and runs the gate), when each last announced itself,
// and how many requests it answered since it started.
func writeReplicas(w io.Writer, rs gateway.ReplicasView) error {
	if len(rs.Replicas) < 2 {
		return nil
	}
	fmt.Fprintf(w, "\n%d replicas (counts above summed over them)\n", len(rs.Replicas))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPLICA\tLEADER\tLAST SEEN\tREQUESTS")
	for _, r := range rs.Replicas {
		id, leader := r.ID, "-"
		if r.ThisReplica {
			id += " (this)"
		}
		if r.Leader {
			leader = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", id, leader, ago(r.LastSeen), r.Totals.Requests)
	}
	return tw.Flush()
}

// The columns status and domains share, headed alike.
const (
	agreementHeader = "AGREEMENT (≥ BOUND)"
	offloadHeader   = "OFFLOAD (RECENT)"
)

// cells is how status and domains both show a domain's student and the
// evidence about it, so that the two read the same.
type cells struct {
	student   string // "v3", "v3 candidate", "v3 (+v4 shadow)", "v2 trained"
	tau       string // the τ the student answers at: "0.91"
	agreement string // selective agreement at τ and its lower bound: "96.8% (≥ 95.1%)"
	coverage  string // share of inputs confident at τ: "83.0%"
	samples   string // the confident samples behind the agreement
	offload   string // share of eligible answers the student gave, all time and of the last 1,000: "62.0% (81.3%)"
}

// cellsOf renders the serving version's statistics, else the leading
// candidate's; "-" where there is nothing to show yet.
func cellsOf(d gateway.DomainView) cells {
	c := cells{"-", "-", "-", "-", "-", "-"}
	if d.LatestVersion > 0 {
		c.student = fmt.Sprintf("v%d trained", d.LatestVersion)
	}
	rv := d.Routing
	if rv == nil {
		return c
	}
	st := rv.ServingStats
	switch {
	case rv.Serving > 0 && rv.Candidate > 0:
		c.student = fmt.Sprintf("v%d (+v%d shadow)", rv.Serving, rv.Candidate)
	case rv.Serving > 0:
		c.student = fmt.Sprintf("v%d", rv.Serving)
	case rv.Candidate > 0:
		c.student, st = fmt.Sprintf("v%d candidate", rv.Candidate), rv.CandidateStats
	}
	if st != nil {
		c.tau = fmt.Sprintf("%.2f", st.Tau)
		c.samples = fmt.Sprint(st.Confident)
		if st.Confident > 0 {
			c.agreement = fmt.Sprintf("%s (≥ %s)", percent(st.SelectiveAgreement), percent(st.LowerBound))
			c.coverage = percent(st.Coverage)
		}
	}
	if len(rv.Routes) > 0 {
		c.offload = percent(rv.Offload)
		if rv.RecentAnswers > 0 {
			c.offload += " (" + percent(rv.RecentOffload) + ")"
		}
	}
	return c
}

// percent renders a share in [0,1] as "96.8%".
func percent(x float64) string { return fmt.Sprintf("%.1f%%", 100*x) }
