package demo

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// latencyRoutes are the routes whose latency the summary shows, in order.
var latencyRoutes = []string{"teacher", "deferred", "student"}

// printSummary writes the end-of-run tables: outcome and latency per
// domain, then the totals.
func printSummary(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\n== %d requests in %s (%.0f req/s)\n\n", len(rep.Trace),
		time.Duration(rep.DurationS*float64(time.Second)).Round(100*time.Millisecond), float64(len(rep.Trace))/max(rep.DurationS, 1e-3))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "domain\tstate\trequests\tpromoted\toffload after\tstudent agrees (data)\tspent\tsaved (gateway's)")
	for _, s := range rep.Domains {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t$%.2f\t$%.2f ($%.2f)\n", s.Domain, s.State, s.Requests,
			promotedText(s), offloadText(s), agreementText(s), s.SpentUSD, s.SavedUSD, s.GatewaySavedUSD)
	}
	_ = tw.Flush()
	printStructured(w, rep)

	fmt.Fprintln(w, "\nlatency by route, ms (p50 / p99, requests)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "domain\t"+strings.Join(latencyRoutes, "\t"))
	for _, s := range rep.Domains {
		cells := []string{s.Domain}
		for _, route := range latencyRoutes {
			cells = append(cells, latencyText(s.Latency[route]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	_ = tw.Flush()
	printTotals(w, rep)
}

// printStructured checks each structured domain's answers: how many are
// valid JSON of the schema they were asked with (all should be), and how
// often each of the student's fields agrees with the data set.
func printStructured(w io.Writer, rep *Report) {
	for _, s := range rep.Domains {
		st := s.Structured
		if st == nil {
			continue
		}
		verdict := "all valid"
		if st.Valid < st.Answers {
			verdict = fmt.Sprintf("%d NOT VALID (see \"invalid\" in the report's trace)", st.Answers-st.Valid)
		}
		name := s.Domain
		if s.GatewayDomain != "" {
			name += " (the gateway's " + s.GatewayDomain + ")"
		}
		fmt.Fprintf(w, "\n%s: answers checked against the strict JSON schema %q: %d of %d valid, %d of %d of the student's; %s\n",
			name, st.Schema, st.Valid, st.Answers, st.StudentValid, st.StudentAnswers, verdict)
		if st.StudentAnswers == 0 {
			continue
		}
		fields := make([]string, 0, len(st.StudentFields))
		for _, f := range sortedKeys(st.StudentFields) {
			fields = append(fields, fmt.Sprintf("%s %.2f%%", f, 100*st.StudentFields[f]))
		}
		fmt.Fprintf(w, "%s: the student's fields agree with the data: %s; every field %.2f%%\n",
			s.Domain, strings.Join(fields, ", "), 100*s.StudentAgreement)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// printTotals writes the spend and savings over all domains.
func printTotals(w io.Writer, rep *Report) {
	var spent, saved float64
	student, errs := 0, 0
	for _, s := range rep.Domains {
		spent, saved = spent+s.SpentUSD, saved+s.SavedUSD
		student, errs = student+s.StudentAnswers, errs+s.Errors
	}
	if errs > 0 {
		fmt.Fprintf(w, "\n%d requests failed (route \"error\" in the report's trace)\n", errs)
	}
	fmt.Fprintf(w, "\nstudents answered %d of %d requests: $%.2f of $%.2f teacher spend saved (%.1f%%)\n",
		student, len(rep.Trace), saved, spent+saved, 100*saved/max(spent+saved, 1e-12))
	fmt.Fprintf(w, "(at $%.2f / $%.2f per million prompt / completion tokens)\n\n", rep.Settings.InputPrice, rep.Settings.OutputPrice)
}

func promotedText(s Summary) string {
	if s.PromotedAtRequest == nil {
		return "never"
	}
	return fmt.Sprintf("v%d at req %d", s.PromotedVersion, *s.PromotedAtRequest)
}

func offloadText(s Summary) string {
	if s.PromotedAtRequest == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%% of %d", 100*s.OffloadAfterPromotion, s.RequestsAfterPromotion)
}

func agreementText(s Summary) string {
	if s.StudentAnswers == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%% of %d", 100*s.StudentAgreement, s.StudentAnswers)
}

func latencyText(l LatencyStats) string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s (%d)", msText(l.P50MS), msText(l.P99MS), l.N)
}

// msText prints milliseconds with a precision that suits their size.
func msText(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
