package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
)

// adminClient talks to a running server's admin API: Badger is
// single-process, so the CLI reads through the server that holds it.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// adminFlags registers --admin-url, --token and --config on fs and returns
// a constructor for the client they describe. The URL defaults to
// admin.listen of the config (file and environment); the token to
// admin.token / UNDERSTUDY_ADMIN_TOKEN.
func adminFlags(fs *flag.FlagSet) func() (*adminClient, error) {
	path := fs.String("config", "", "config `file` of the server (to find its admin address and token)")
	base := fs.String("admin-url", "", "admin API `URL` (default: from admin.listen, http://127.0.0.1:8081)")
	token := fs.String("token", "", "admin bearer `token` (default: admin.token or $UNDERSTUDY_ADMIN_TOKEN)")
	return func() (*adminClient, error) {
		cfg, err := config.Load(*path, nil)
		if err != nil {
			return nil, err
		}
		c := &adminClient{base: *base, token: *token, http: &http.Client{}}
		if c.base == "" {
			host, port, err := net.SplitHostPort(cfg.Admin.Listen)
			if err != nil {
				return nil, fmt.Errorf("admin.listen %q: %w", cfg.Admin.Listen, err)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			c.base = "http://" + net.JoinHostPort(host, port)
		}
		c.base = strings.TrimSuffix(c.base, "/")
		if c.token == "" {
			c.token = cfg.Admin.Token
		}
		return c, nil
	}
}

// get sends GET path and returns the response, or an error carrying the
// admin API's message for a non-2xx status.
func (c *adminClient) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching the admin API at %s (is `understudy serve` running?): %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("admin API: %s (%s)", e.Error.Message, resp.Status)
		}
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	return resp, nil
}

func (c *adminClient) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// listDomains reads the domains through GET /admin/domains page by page,
// following next, until it has limit of them (0: all). It returns them
// with the number of domains the server has.
func (c *adminClient) listDomains(ctx context.Context, limit int) ([]gateway.DomainView, int, error) {
	var all []gateway.DomainView
	total, after := 0, ""
	for {
		n := gateway.MaxDomainsPage
		if limit > 0 {
			n = min(n, limit-len(all))
		}
		path := "/admin/domains?limit=" + strconv.Itoa(n)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		var page gateway.DomainsPage
		if err := c.getJSON(ctx, path, &page); err != nil {
			return nil, 0, err
		}
		all, total = append(all, page.Domains...), page.Total
		if page.Next == nil || *page.Next == after || (limit > 0 && len(all) >= limit) {
			// A server from before paging answers every domain and no
			// next; one that repeats a page would loop forever.
			return all, max(total, len(all)), nil
		}
		after = *page.Next
	}
}

// limitFlag registers --limit, the most domains a listing reads.
func limitFlag(fs *flag.FlagSet) *int {
	return fs.Int("limit", 0, "show at most `N` domains, the first by name (0: all, read a page of 1000 at a time)")
}

// writeMore says how many domains a listing cut by --limit left out.
func writeMore(w io.Writer, shown, total int) error {
	if shown >= total {
		return nil
	}
	_, err := fmt.Fprintf(w, "\n%d of %d domains shown (--limit)\n", shown, total)
	return err
}

func domainsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("domains", stdout)
	client := adminFlags(fs.FlagSet)
	asJSON := fs.Bool("json", false, "print the admin API's JSON")
	limit := limitFlag(fs.FlagSet)
	if err := fs.parse(args); err != nil {
		return err
	}
	name := ""
	if fs.NArg() > 0 {
		// Flags may follow the name.
		name = fs.Arg(0)
		if err := fs.parse(fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fs.usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
		}
	}
	if *limit < 0 {
		return fs.usageError(fmt.Sprintf("--limit must not be negative, got %d", *limit))
	}
	c, err := client()
	if err != nil {
		return err
	}
	if name != "" {
		var d gateway.DomainView
		if err := c.getJSON(ctx, "/admin/domains/"+url.PathEscape(name), &d); err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(d)
		}
		return writeDomain(stdout, d)
	}
	ds, total, err := c.listDomains(ctx, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(gateway.DomainsPage{Domains: ds, Total: total})
	}
	if err := writeDomains(stdout, ds); err != nil {
		return err
	}
	return writeMore(stdout, len(ds), total)
}

// domainTable starts the table of n domains under header, or says there
// are none yet and returns no table.
func domainTable(w io.Writer, n int, header string) (*tabwriter.Writer, error) {
	if n == 0 {
		_, err := fmt.Fprintln(w, "no domains yet: send traffic through the gateway")
		return nil, err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw, nil
}

func writeDomains(w io.Writer, ds []gateway.DomainView) error {
	tw, err := domainTable(w, len(ds), "DOMAIN\tSTATE\tPAIRS\tLABELS\tSTUDENT\t"+agreementHeader+"\tCOVERAGE\tSAMPLES\t"+offloadHeader+"\tTOP LABELS\tLAST SEEN")
	if tw == nil {
		return err
	}
	var notes []string
	for _, d := range ds {
		var top []string
		for _, l := range d.TopLabels {
			top = append(top, fmt.Sprintf("%s (%d)", truncate(l.Label, 24), l.Count))
		}
		c := cellsOf(d)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.State, d.Pairs, d.Labels, c.student,
			c.agreement, c.coverage, c.samples, c.offload, truncate(strings.Join(top, ", "), 40), ago(d.LastSeen))
		if d.OpenEndedReason != "" {
			notes = append(notes, d.Name+": "+d.OpenEndedReason)
		}
	}
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

// writeDomain shows one domain in detail: what the listing shows of it,
// then its fields, labels and latest transitions.
func writeDomain(w io.Writer, d gateway.DomainView) error {
	c := cellsOf(d)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "domain\t%s\n", d.Name)
	fmt.Fprintf(tw, "state\t%s\n", d.State)
	fmt.Fprintf(tw, "pairs\t%d, %d labels, last seen %s\n", d.Pairs, d.Labels, ago(d.LastSeen))
	fmt.Fprintf(tw, "student\t%s\n", c.student)
	fmt.Fprintf(tw, "τ\t%s\n", c.tau)
	fmt.Fprintf(tw, "agreement (≥ bound)\t%s on %s confident samples\n", c.agreement, c.samples)
	fmt.Fprintf(tw, "coverage\t%s\n", c.coverage)
	fmt.Fprintf(tw, "offload (recent)\t%s\n", c.offload)
	fmt.Fprintf(tw, "saved, spent\t$%.4f, $%.4f\n", d.SavedDollars, d.SpentDollars)
	if own := d.ThisReplica; own != nil {
		var n int64
		for _, k := range own.Routes {
			n += k
		}
		fmt.Fprintf(tw, "replicas\t%d (counts summed); this one: %d answers, offload %s, saved $%.4f\n", d.Replicas, n, percent(own.Offload), own.SavedDollars)
	}
	if rv := d.Routing; rv != nil && rv.Waiting != "" {
		fmt.Fprintf(tw, "waiting\t%s\n", rv.Waiting)
	}
	if d.OpenEndedReason != "" {
		fmt.Fprintf(tw, "open-ended\t%s\n", d.OpenEndedReason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Fields) > 0 {
		fmt.Fprintf(w, "\nfields of v%d (uniform samples; confident: at τ in that field)\n", d.FieldsVersion)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FIELD\tAGREEMENT\tCONFIDENT\tSAMPLES\tCOVERAGE")
		for _, f := range d.Fields {
			agreement := "-"
			if f.Confident > 0 {
				agreement = percent(f.Agreement)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", f.Path, agreement, f.Confident, f.Samples, percent(f.Coverage))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(d.TopLabels) > 0 {
		fmt.Fprintln(w, "\ntop labels")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, l := range d.TopLabels[:min(len(d.TopLabels), 10)] {
			fmt.Fprintf(tw, "%d\t%s\n", l.Count, truncate(l.Label, 100))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rv := d.Routing; rv != nil && len(rv.Transitions) > 0 {
		fmt.Fprintln(w, "\nlatest transitions")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, tr := range rv.Transitions[max(0, len(rv.Transitions)-5):] {
			fmt.Fprintf(tw, "%s\t%s → %s\t%s\n", tr.Time.Local().Format("2006-01-02 15:04:05"), tr.From, tr.To, tr.Reason)
		}
		return tw.Flush()
	}
	return nil
}

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", stdout)
	client := adminFlags(fs.FlagSet)
	domain := fs.String("domain", "", "the `domain` to export (required; see `understudy domains`)")
	out := fs.String("out", "", "write to `file` instead of standard output")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *domain == "" {
		return fs.usageError("--domain is required")
	}
	c, err := client()
	if err != nil {
		return err
	}
	resp, err := c.get(ctx, "/admin/domains/"+url.PathEscape(*domain)+"/export")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	total, _ := strconv.ParseInt(resp.Header.Get("X-Understudy-Pairs"), 10, 64)

	w := stdout
	var f *os.File
	if *out != "" {
		if f, err = os.Create(*out); err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	bar := newProgress(stderr, *domain, total, *out != "")
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	var lines int64
	var incomplete error
	lineStart := true
	for {
		line, err := br.ReadSlice('\n')
		// The gateway ends an export it could not finish with an OpenAI
		// error object (gateway/admin.go, export); a pair's line always
		// starts with {"messages":.
		if lineStart && bytes.HasPrefix(line, []byte(`{"error":`)) && err == nil {
			incomplete = exportError(line)
			continue
		}
		if len(line) > 0 {
			if _, werr := bw.Write(line); werr != nil {
				return werr
			}
		}
		lineStart = err == nil
		if err == nil {
			lines++
			bar.update(lines)
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		incomplete = fmt.Errorf("the connection to the gateway broke off: %w", err)
		break
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f != nil {
		if err := f.Close(); err != nil {
			return err
		}
	}
	if incomplete != nil {
		where := "written"
		if *out != "" {
			where = "written to " + *out
		}
		return fmt.Errorf("export of %s is INCOMPLETE, %d pairs %s: %w", *domain, lines, where, incomplete)
	}
	bar.done(lines, *out)
	return nil
}

// exportError reads the error line that ends an incomplete export.
func exportError(line []byte) error {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(line, &e) != nil || e.Error.Message == "" {
		return fmt.Errorf("the gateway ended the export with an error: %s", bytes.TrimSpace(line))
	}
	return fmt.Errorf("the gateway says: %s", e.Error.Message)
}

// progress draws a progress bar on a terminal, else prints one final line.
type progress struct {
	w        io.Writer
	domain   string
	total    int64
	tty      bool
	enabled  bool
	start    time.Time
	lastDraw time.Time
}

func newProgress(w io.Writer, domain string, total int64, enabled bool) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, domain: domain, total: total, tty: tty, enabled: enabled, start: time.Now()}
}

func (p *progress) update(n int64) {
	if !p.enabled || !p.tty || time.Since(p.lastDraw) < 100*time.Millisecond {
		return
	}
	p.lastDraw = time.Now()
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = min(1, float64(n)/float64(p.total))
	}
	filled := int(frac * width)
	fmt.Fprintf(p.w, "\rexporting %s [%s%s] %d/%d pairs %3.0f%%", p.domain,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), n, p.total, frac*100)
}

func (p *progress) done(n int64, out string) {
	if !p.enabled {
		return
	}
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "exported %d pairs of %s to %s in %s\n", n, p.domain, out, time.Since(p.start).Round(time.Millisecond))
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	default:
		return t.Format("2006-01-02")
	}
}
