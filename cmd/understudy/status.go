package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/understudy-dev/understudy/gateway"
)

// statusCmd prints a summary of every domain: state, student version,
// agreement with its lower bound, coverage, offload and money saved;
// --watch redraws it.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := adminFlags(fs)
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "refresh `interval` with --watch")
	if err := fs.Parse(args); err != nil {
		return err
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
		var out struct {
			Domains []gateway.DomainView `json:"domains"`
		}
		if err := c.getJSON(ctx, "/admin/domains", &out); err != nil {
			return err
		}
		if *watch && tty {
			fmt.Fprint(stdout, "\033[H\033[2J") // home, clear
		}
		if *watch {
			fmt.Fprintf(stdout, "understudy status  %s  (%s)\n\n", c.base, time.Now().Format("15:04:05"))
		}
		if err := writeStatus(stdout, out.Domains); err != nil {
			return err
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
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no domains yet: send traffic through the gateway")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSTATE\tSTUDENT\tτ\tAGREEMENT ± BOUND\tCOVERAGE\tOFFLOAD\tSAVED\tSPENT")
	var saved, spent float64
	var notes []string
	for _, d := range ds {
		student, tau, agreement, coverage, offload := "-", "-", "-", "-", "-"
		if rv := d.Routing; rv != nil {
			st := rv.ServingStats
			switch {
			case rv.Serving > 0:
				student = fmt.Sprintf("v%d", rv.Serving)
			case rv.Candidate > 0:
				student, st = fmt.Sprintf("v%d (candidate)", rv.Candidate), rv.CandidateStats
			}
			if st != nil && st.Confident > 0 {
				agreement = fmt.Sprintf("%.3f -%.3f", st.SelectiveAgreement, st.SelectiveAgreement-st.LowerBound)
				coverage = fmt.Sprintf("%.1f%%", 100*st.Coverage)
			}
			if st != nil {
				tau = fmt.Sprintf("%.2f", st.Tau)
			}
			if rv.Waiting != "" {
				notes = append(notes, d.Name+": "+rv.Waiting)
			}
			if len(rv.Routes) > 0 {
				offload = fmt.Sprintf("%.1f%%", 100*rv.Offload)
			}
		}
		saved += d.SavedDollars
		spent += d.SpentDollars
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t$%.4f\t$%.4f\n", d.Name, d.State, student, tau, agreement, coverage, offload, d.SavedDollars, d.SpentDollars)
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
