package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-dev/understudy/internal/testnet"
)

// deployDir holds the Grafana dashboard, its provisioning, Prometheus's
// config and the compose file.
const deployDir = "../deploy"

// dashboard is what the tests read of deploy/grafana/understudy.json.
type dashboard struct {
	UID           string      `json:"uid"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []dashVar `json:"list"`
	} `json:"templating"`
}

type dashPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashVar struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Query      any    `json:"query"` // a string, or an object with "query"
	Multi      bool   `json:"multi"`
	IncludeAll bool   `json:"includeAll"`
	Current    struct {
		Value any `json:"value"`
	} `json:"current"`
}

// allPanels returns the panels, those of collapsed rows included.
func (d *dashboard) allPanels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func (d *dashboard) variable(name string) *dashVar {
	for i := range d.Templating.List {
		if d.Templating.List[i].Name == name {
			return &d.Templating.List[i]
		}
	}
	return nil
}

func readDashboard(t *testing.T) (*dashboard, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "understudy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	var raw map[string]any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("understudy.json: %v", err)
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("understudy.json: %v", err)
	}
	return &d, raw
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// grafanaVars matches the dashboard variables an expression may use, in
// Grafana's three spellings.
var grafanaVars = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)`)

// expand replaces the dashboard's variables in expr the way Grafana would
// with domain selected and a time range of a few minutes.
func expand(expr, domain string) string {
	values := map[string]string{"domain": domain, "__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
	return grafanaVars.ReplaceAllStringFunc(expr, func(m string) string {
		s := grafanaVars.FindStringSubmatch(m)
		if v, ok := values[s[1]+s[2]+s[3]]; ok {
			return v
		}
		return m
	})
}

// checkDashboardFiles checks what Grafana needs to load the dashboard
// as provisioned by deploy/docker-compose.yml, and on import.
func checkDashboardFiles(t *testing.T) {
	d, raw := readDashboard(t)
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, schemaVersion %d: want a uid and schemaVersion ≥ 36", d.UID, d.SchemaVersion)
	}

	// Panels: unique ids; every panel but rows queries something, with
	// the time range Grafana picks ($__rate_interval, $__range), never a
	// fixed window.
	literalWindow := regexp.MustCompile(`\[\s*\d+[smhdwy]`)
	seen := map[int]string{}
	for _, p := range d.allPanels() {
		if prev, ok := seen[p.ID]; ok || p.ID <= 0 {
			t.Errorf("panel %q has id %d, also used by %q (ids must be unique and positive)", p.Title, p.ID, prev)
		}
		seen[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no queries", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" || refs[q.RefID] {
				t.Errorf("panel %d %q: query %q has no expression, no refId or a repeated one", p.ID, p.Title, q.RefID)
			}
			refs[q.RefID] = true
			if literalWindow.MatchString(q.Expr) {
				t.Errorf("panel %d %q: %s has a fixed range window; use $__rate_interval or $__range", p.ID, p.Title, q.Expr)
			}
			if rest := expand(q.Expr, "x"); strings.Contains(rest, "$") {
				t.Errorf("panel %d %q: %s uses an unknown variable", p.ID, p.Title, q.Expr)
			}
		}
	}

	// The domain variable.
	if v := d.variable("domain"); v == nil {
		t.Error("no domain variable")
	} else {
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		if v.Type != "query" || q != "label_values(understudy_gateway_requests_total, domain)" || !v.Multi || !v.IncludeAll {
			t.Errorf("domain variable: type %q, query %q, multi %v, includeAll %v; want a multi-value query variable with All on label_values(understudy_gateway_requests_total, domain)",
				v.Type, q, v.Multi, v.IncludeAll)
		}
	}

	// Datasources: every reference is the datasource variable (whose
	// default is the provisioned datasource), the provisioned datasource
	// itself, or Grafana's built-in one (annotations).
	var ds struct {
		Datasources []struct {
			Name, UID, Type, URL string
		}
	}
	readYAML(t, filepath.Join(deployDir, "grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("provisioning/datasources/prometheus.yml: want one prometheus datasource with a uid, got %+v", ds.Datasources)
	}
	provisioned := ds.Datasources[0]
	dsVar := d.variable("datasource")
	if dsVar == nil || dsVar.Type != "datasource" || dsVar.Query != "prometheus" || dsVar.Current.Value != provisioned.UID {
		t.Errorf("datasource variable %+v: want type datasource, query prometheus, default %q (the provisioned uid)", dsVar, provisioned.UID)
	}
	var refs int
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if k != "datasource" {
					walk(path+"."+k, e)
					continue
				}
				refs++
				ref, _ := e.(map[string]any)
				uid, _ := ref["uid"].(string)
				typ, _ := ref["type"].(string)
				switch {
				case typ == "grafana" && uid == "-- Grafana --":
				case typ == "prometheus" && (uid == "${datasource}" || uid == "$datasource") && dsVar != nil:
				case typ == "prometheus" && uid == provisioned.UID:
				default:
					t.Errorf("%s.datasource = %v: resolves to neither the datasource variable nor the provisioned datasource %q", path, e, provisioned.UID)
				}
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		}
	}
	walk("", raw)
	if refs == 0 {
		t.Error("no datasource references in the dashboard")
	}

	// The compose file runs Prometheus and Grafana with the provisioning
	// and the dashboard where the provider looks for it; Prometheus scrapes
	// the gateway's service.
	var compose struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	readYAML(t, filepath.Join(deployDir, "docker-compose.yml"), &compose)
	for _, s := range []string{"understudy", "prometheus", "grafana"} {
		if _, ok := compose.Services[s]; !ok {
			t.Errorf("docker-compose.yml has no %s service", s)
		}
	}
	if u, err := url.Parse(provisioned.URL); err != nil || u.Hostname() != "prometheus" {
		t.Errorf("the provisioned datasource's url %q is not the compose service prometheus", provisioned.URL)
	}
	var providers struct {
		Providers []struct {
			Type    string
			Options struct{ Path string }
		}
	}
	readYAML(t, filepath.Join(deployDir, "grafana", "provisioning", "dashboards", "understudy.yml"), &providers)
	mounts := map[string]string{}
	for _, v := range compose.Services["grafana"].Volumes {
		if src, dst, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(src, ".") {
			dst, _, _ = strings.Cut(dst, ":")
			mounts[filepath.Clean(src)] = dst
		}
	}
	if mounts["grafana/provisioning"] != "/etc/grafana/provisioning" {
		t.Errorf("grafana does not mount ./grafana/provisioning at /etc/grafana/provisioning: %v", mounts)
	}
	loaded := false
	for _, p := range providers.Providers {
		dst := mounts["grafana/understudy.json"]
		loaded = loaded || p.Type == "file" && dst != "" && strings.HasPrefix(dst, strings.TrimSuffix(p.Options.Path, "/")+"/")
	}
	if !loaded {
		t.Errorf("no file provider of provisioning/dashboards/understudy.yml (%+v) looks where grafana mounts understudy.json (%v)", providers.Providers, mounts)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(deployDir, "prometheus", "prometheus.yml"), &prom)
	scrapes := false
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			scrapes = scrapes || slices.Contains(st.Targets, "understudy:8080")
		}
	}
	if !scrapes {
		t.Error("prometheus/prometheus.yml does not scrape understudy:8080")
	}
}

// TestDashboard checks the Grafana dashboard against a real Prometheus
// scraping the real gateway: after a student is promoted, every query of
// every panel returns data. It also checks the dashboard's files (panel
// ids, datasource references, provisioning), with -short too, and lints
// the gateway's /metrics and deploy/prometheus/prometheus.yml with promtool.
func TestDashboard(t *testing.T) {
	t.Run("files", checkDashboardFiles)
	if testing.Short() {
		t.Skip("runs the binary and Prometheus")
	}
	prometheusBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: make prometheus (or make test) installs it (Debian's prometheus package: apt-get install prometheus, which brings promtool)")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: make prometheus (or make test) installs it (Debian's prometheus package: apt-get install prometheus)")
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(deployDir, "prometheus", "prometheus.yml")).CombinedOutput(); err != nil {
		t.Errorf("promtool check config deploy/prometheus/prometheus.yml: %v\n%s", err, out)
	}

	const domain = "spam"
	spamPath, subjectsPath := spamData(t, "spam-ham.jsonl"), spamData(t, "subjects.jsonl")
	spam := readLabelled(t, spamPath, 1<<20)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(spam), func(i, j int) { spam[i], spam[j] = spam[j], spam[i] })
	subjects := readLabelled(t, subjectsPath, 200)

	simAddr := startChild(t, "teacher-sim", "--listen", "127.0.0.1:0", "--latency", "2ms",
		"--task", domain+"="+spamPath, "--system", domain+"="+spamSystem,
		"--task", "subjects="+subjectsPath, "--system", "subjects="+subjectsSystem).listening(t, "teacher-sim")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "understudy.yaml")
	if err := os.WriteFile(cfg, []byte("trainer:\n  min_pairs: 200\n  retrain_every: 500\n  interval: 100ms\n  cooldown: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startChild(t, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"), "--teacher-url", "http://"+simAddr+"/v1")
	gwAddr := gw.listening(t, "gateway")
	r := &routeRun{t: t, adminAddr: gw.listening(t, "admin API"),
		client: openai.NewClient(option.WithBaseURL("http://"+gwAddr+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))}
	testnet.WaitReady(t, "http://"+gwAddr+"/readyz")
	prom := startPrometheus(t, prometheusBin, gwAddr)
	// Prometheus starts scraping up to 5 s after it is ready: from then on
	// it sees every change.
	prom.waitScrapedAfter(t, time.Now())

	// Traffic until the gate promotes the domain (every third request
	// streamed), with a few requests to an open-ended domain.
	mails := &cycle{all: spam}
	sendSome := func(n int) {
		next := mails.sent
		r.send("subjects", subjectsSystem, subjects[(next/10)%190:(next/10)%190+10])
		r.send(domain, spamSystem, mails.take(n))
	}
	for deadline := time.Now().Add(90 * time.Second); r.state(domain) != "serving"; {
		if time.Now().After(deadline) || mails.sent >= 6000 {
			v, _ := getDomain(t, r.adminAddr, domain)
			t.Fatalf("%s not promoted after %d requests: state %s, version %d", domain, mails.sent, v.State, v.LatestVersion)
		}
		sendSome(100)
		if mails.sent%500 == 0 {
			time.Sleep(300 * time.Millisecond) // let training and scoring keep up
		}
	}
	t.Logf("%s promoted after %d requests", domain, mails.sent)
	// A little more while Prometheus scrapes the student's answers.
	for until := time.Now().Add(5 * time.Second); time.Now().Before(until); time.Sleep(200 * time.Millisecond) {
		sendSome(30)
	}
	prom.waitScrapedAfter(t, time.Now())

	// (b) The exposition passes promtool's lint.
	resp, err := http.Get("http://" + gwAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lint := exec.Command(promtool, "check", "metrics")
	lint.Stdin = bytes.NewReader(exposition)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics on the gateway's /metrics: %v\n%s", err, out)
	}
	families := map[string]bool{}
	for _, line := range strings.Split(string(exposition), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = true
		}
	}

	// (a) Every query of every panel returns data.
	d, _ := readDashboard(t)
	queries, failed := 0, 0
	for _, p := range d.allPanels() {
		for _, q := range p.Targets {
			expr := expand(q.Expr, domain)
			queries++
			res, err := prom.query(expr)
			switch {
			case err != nil:
				t.Errorf("panel %d %q, query %s: Prometheus refused it: %v\n    %s", p.ID, p.Title, q.RefID, err, expr)
			case len(res) == 0:
				t.Errorf("panel %d %q, query %s returned no data: %s\n    %s", p.ID, p.Title, q.RefID, prom.why(expr, domain, families), expr)
			default:
				if !slices.ContainsFunc(res, func(s promSample) bool { return s.Value[1] != "NaN" }) {
					t.Logf("note: panel %d %q, query %s returned only NaN (no observations in the window): %s", p.ID, p.Title, q.RefID, expr)
				}
				continue
			}
			failed++
		}
	}
	t.Logf("%d of %d dashboard queries returned data", queries-failed, queries)
}

// promServer is a Prometheus started by a test.
type promServer struct {
	url string
	mu  *sync.Mutex
	log *strings.Builder
}

// startPrometheus runs Prometheus on loopback with its data in a temporary
// directory, scraping target every second, and kills it when the test
// ends. A port taken between choosing and binding it is retried.
func startPrometheus(t *testing.T, bin, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: understudy
    static_configs:
      - targets: [%q]
`, target)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := range 3 {
		addr := testnet.FreeAddr(t)
		p := &promServer{url: "http://" + addr, mu: &sync.Mutex{}, log: &strings.Builder{}}
		cmd := exec.Command(bin, "--config.file="+cfg, "--web.listen-address="+addr,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprint("data", attempt)))
		cmd.Stdout = &lockedWriter{mu: p.mu, b: p.log}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("prometheus logs:\n%s", p.logs())
			}
		})
		ready := time.NewTicker(20 * time.Millisecond)
		deadline := time.After(30 * time.Second)
	wait:
		for {
			select {
			case <-ready.C:
				if strings.Contains(p.logs(), "Server is ready to receive web requests") {
					ready.Stop()
					return p
				}
			case <-exited:
				break wait
			case <-deadline:
				t.Fatalf("prometheus not ready in 30s:\n%s", p.logs())
			}
		}
		ready.Stop()
		if !strings.Contains(p.logs(), "address already in use") {
			t.Fatalf("prometheus exited:\n%s", p.logs())
		}
	}
	t.Fatal("prometheus found its port taken 3 times")
	return nil
}

func (p *promServer) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// promSample is one element of an instant vector (or a scalar).
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query at the present time.
func (p *promServer) query(expr string) ([]promSample, error) {
	resp, err := http.Get(p.url + "/api/v1/query?" + url.Values{"query": {expr}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Status    string `json:"status"`
		Error     string `json:"error"`
		ErrorType string `json:"errorType"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding the answer (HTTP %d): %w", resp.StatusCode, err)
	}
	if out.Status != "success" {
		return nil, fmt.Errorf("%s: %s", out.ErrorType, out.Error)
	}
	switch out.Data.ResultType {
	case "vector":
		var v []promSample
		err := json.Unmarshal(out.Data.Result, &v)
		return v, err
	case "scalar":
		var s promSample
		err := json.Unmarshal(out.Data.Result, &s.Value)
		return []promSample{s}, err
	default:
		return nil, fmt.Errorf("result type %s, want an instant vector", out.Data.ResultType)
	}
}

// waitScrapedAfter waits until Prometheus has scraped the gateway
// successfully after t0.
func (p *promServer) waitScrapedAfter(t *testing.T, t0 time.Time) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		// timestamp() of a plain selector is the time of the last scrape.
		res, err := p.query(`timestamp(up{job="understudy"}) and up{job="understudy"} == 1`)
		if err == nil && len(res) == 1 {
			var ts float64
			if s, ok := res[0].Value[1].(string); ok {
				_, _ = fmt.Sscan(s, &ts)
			}
			if ts > float64(t0.UnixMilli())/1000 {
				return
			}
		}
	}
	res, err := p.query(`up`)
	t.Fatalf("prometheus has not scraped the gateway since %v: up = %+v (%v)", t0, res, err)
}

var metricName = regexp.MustCompile(`\b(?:understudy|go|process)_[a-z0-9_]+\b`)

// why explains an empty answer: the metrics it reads that the gateway does
// not expose, or that have no series in the domain.
func (p *promServer) why(expr, domain string, families map[string]bool) string {
	var missing, noDomain []string
	for _, name := range slices.Compact(slices.Sorted(slices.Values(metricName.FindAllString(expr, -1)))) {
		family := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && families[base] {
				family = base
			}
		}
		if !families[family] {
			missing = append(missing, name)
			continue
		}
		if strings.Contains(expr, `domain=~"`+domain+`"`) {
			if res, err := p.query(fmt.Sprintf(`count(%s{domain=%q})`, name, domain)); err == nil && len(res) == 0 {
				noDomain = append(noDomain, name)
			}
		}
	}
	switch {
	case len(missing) > 0:
		return "metric not exposed by the gateway (not registered, or no series yet): " + strings.Join(missing, ", ")
	case len(noDomain) > 0:
		return fmt.Sprintf("no series with domain=%q (no domain label?): %s", domain, strings.Join(noDomain, ", "))
	default:
		return "its metrics are exposed: the expression selects nothing (labels or values?)"
	}
}
