package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// FieldError is an error in one configuration field: a value Validate
// rejects, or one that Load could not read from the file.
type FieldError struct {
	Field string // the YAML path, e.g. "teacher.url"
	Msg   string
	Line  int // the line in the file, when Load found it there; else 0
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// ValidDomainName reports whether s can name a task domain: 1-64
// characters of [A-Za-z0-9._-], and not "." or "..", which a URL path
// (the admin API's /admin/domains/{name}) cannot carry.
func ValidDomainName(s string) bool {
	if len(s) == 0 || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks the configuration and returns every problem found, each a
// *FieldError naming its field, joined with errors.Join. Each section checks
// its own fields; the checks that span sections (an address that needs a
// key) live with the field they report.
func (c *Config) Validate() error {
	v := fields{}
	v.addr("listen", c.Listen)
	if c.DataDir == "" {
		v.bad("data_dir", "must not be empty")
	}
	errs := v.errs
	errs = append(errs, c.Admin.validate()...)
	errs = append(errs, c.Gateway.validate(c.Listen)...)
	errs = append(errs, c.Teacher.validate()...)
	errs = append(errs, c.Storage.validate()...)
	errs = append(errs, c.Trainer.validate()...)
	errs = append(errs, c.Router.validate()...)
	errs = append(errs, c.Metrics.validate()...)
	errs = append(errs, c.Pricing.validate()...)
	errs = append(errs, c.Log.validate()...)
	errs = append(errs, validateDomains(c.Domains)...)
	return errors.Join(errs...)
}

// fields collects the problems of one section as *FieldErrors, naming each
// field by the section's YAML path (at) and the field's key.
type fields struct {
	at   string
	errs []error
}

func (v *fields) bad(key, format string, args ...any) {
	field := key
	switch {
	case v.at == "":
	case key == "":
		field = v.at
	default:
		field = v.at + "." + key
	}
	v.errs = append(v.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *fields) addr(key, addr string) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		v.bad(key, "must be host:port, got %q", addr)
	}
}

func (v *fields) positive(key string, d time.Duration) {
	if d <= 0 {
		v.bad(key, "must be positive, got %s", d)
	}
}

func (v *fields) notNegative(key string, d time.Duration) {
	if d < 0 {
		v.bad(key, "must not be negative, got %s", d)
	}
}

func (v *fields) atLeast(key string, n, least int) {
	if n < least {
		v.bad(key, "must be at least %d, got %d", least, n)
	}
}

func (v *fields) notNegativeInt(key string, n int) {
	if n < 0 {
		v.bad(key, "must not be negative, got %d", n)
	}
}

func (a Admin) validate() []error {
	v := fields{at: "admin"}
	v.addr("listen", a.Listen)
	if a.Token == "" && !loopbackOnly(a.Listen) {
		v.bad("token", "is required when admin.listen (%q) is not a loopback address", a.Listen)
	}
	return v.errs
}

// validate checks the gateway section; listen is the top-level address the
// gateway serves, which decides whether clients must authenticate.
func (g Gateway) validate(listen string) []error {
	v := fields{at: "gateway"}
	if len(g.APIKeys) == 0 && !g.AllowUnauthenticated && !loopbackOnly(listen) {
		v.bad("api_keys", "are required when listen (%q) is not a loopback address: without them anyone who reaches the port spends the teacher's key (set gateway.allow_unauthenticated: true only behind a proxy that authenticates clients)", listen)
	}
	v.positive("read_header_timeout", g.ReadHeaderTimeout)
	v.positive("read_timeout", g.ReadTimeout)
	v.positive("write_timeout", g.WriteTimeout)
	v.positive("idle_timeout", g.IdleTimeout)
	v.notNegativeInt("max_conns", g.MaxConns)
	for i, k := range g.APIKeys {
		if strings.TrimSpace(k) == "" {
			v.bad(fmt.Sprintf("api_keys[%d]", i), "must not be empty")
		}
	}
	if g.MaxBodySize < 1024 {
		v.bad("max_body_size", "must be at least 1KiB, got %s", g.MaxBodySize)
	}
	v.notNegative("shutdown_delay", g.ShutdownDelay)
	v.positive("shutdown_timeout", g.ShutdownTimeout)
	v.atLeast("gc_percent", g.GCPercent, 10)
	v.notNegativeInt("max_auto_domains", g.MaxAutoDomains)
	v.notNegativeInt("new_domains_per_minute", g.NewDomainsPerMinute)
	if g.MemoryLimit != 0 && g.MemoryLimit < 16*MiB {
		v.bad("memory_limit", "must be 0 (off) or at least 16MiB, got %s", g.MemoryLimit)
	}
	return v.errs
}

func (t Teacher) validate() []error {
	v := fields{at: "teacher"}
	if u, err := url.Parse(t.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.bad("url", "must be an http:// or https:// URL, got %q", t.URL)
	}
	v.positive("connect_timeout", t.ConnectTimeout)
	v.positive("first_byte_timeout", t.FirstByteTimeout)
	v.positive("idle_timeout", t.IdleTimeout)
	v.positive("timeout", t.Timeout)
	v.positive("max_idle_conn_duration", t.MaxIdleConnDuration)
	v.positive("queue_timeout", t.QueueTimeout)
	v.atLeast("max_conns", t.MaxConns, 1)
	v.notNegativeInt("retries", t.Retries)
	v.notNegative("retry_window", t.RetryWindow)
	return append(v.errs, t.Breaker.validate()...)
}

func (b Breaker) validate() []error {
	v := fields{at: "teacher.breaker"}
	if r := b.FailureRatio; !(r > 0 && r <= 1) {
		v.bad("failure_ratio", "must be in (0,1], got %v", r)
	}
	v.atLeast("min_requests", b.MinRequests, 1)
	if b.Window < time.Second {
		v.bad("window", "must be at least 1s, got %s", b.Window)
	}
	v.atLeast("consecutive_failures", b.ConsecutiveFailures, 1)
	v.positive("open_timeout", b.OpenTimeout)
	v.atLeast("half_open_requests", b.HalfOpenRequests, 1)
	return v.errs
}

func (s Storage) validate() []error {
	v := fields{at: "storage"}
	v.positive("ttl", s.TTL)
	v.atLeast("max_pairs_per_domain", s.MaxPairsPerDomain, 1)
	v.atLeast("queue_size", s.QueueSize, 1)
	v.atLeast("batch_size", s.BatchSize, 1)
	if s.QueueBytes < MiB {
		v.bad("queue_bytes", "must be at least 1MiB, got %s", s.QueueBytes)
	}
	if s.MinFree < 64*MiB {
		v.bad("min_free", "must be at least 64MiB, got %s", s.MinFree)
	}
	v.positive("flush_interval", s.FlushInterval)
	v.positive("retention_interval", s.RetentionInterval)
	if s.RetentionRate == 0 || s.RetentionRate < -1 {
		v.bad("retention_rate", "must be a positive number of pairs per second, or -1 (unpaced), got %d", s.RetentionRate)
	}
	if f := s.EncryptionKeyFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			v.bad("encryption_key_file", "cannot read %s: %v", f, errors.Unwrap(err))
		}
	}
	switch s.Backend {
	case BackendBadger:
	case BackendNATS:
		v.errs = append(v.errs, s.NATS.validate()...)
	default:
		v.bad("backend", "must be %s or %s, got %q", BackendBadger, BackendNATS, s.Backend)
	}
	return v.errs
}

// validate checks the storage.nats section, used by the nats backend.
func (n StorageNATS) validate() []error {
	v := fields{at: "storage.nats"}
	urls := SplitURLs(n.URL)
	if len(urls) == 0 {
		v.bad("url", "is required when storage.backend is nats (nats://host:4222, comma-separated for a cluster)")
	}
	for _, u := range urls {
		if !validNATSURL(u) {
			v.bad("url", "%q is not a NATS server URL: want nats://host:port or tls://host:port (ws://, wss:// too)", u)
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		v.bad("replicas", "must be in 1..5 (1 for a single server, 3 for a cluster), got %d", n.Replicas)
	}
	if !natsPrefix.MatchString(n.Prefix) {
		v.bad("prefix", "must be 1-32 characters of A-Z a-z 0-9 _ -, got %q", n.Prefix)
	}
	ways := 0
	for _, set := range []bool{n.CredsFile != "", n.User != "" || n.Password != "", n.Token != ""} {
		if set {
			ways++
		}
	}
	if ways > 1 {
		v.bad("", "set at most one way to authenticate: creds_file, user and password, or token")
	}
	if n.User != "" && n.Password == "" {
		v.bad("password", "is required with user")
	}
	if n.Password != "" && n.User == "" {
		v.bad("user", "is required with password")
	}
	if n.CertFile != "" && n.KeyFile == "" {
		v.bad("key_file", "is required with cert_file")
	}
	if n.KeyFile != "" && n.CertFile == "" {
		v.bad("cert_file", "is required with key_file")
	}
	for _, f := range []struct{ key, path string }{
		{"creds_file", n.CredsFile}, {"ca_file", n.CAFile}, {"cert_file", n.CertFile}, {"key_file", n.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			v.bad(f.key, "cannot read %s: %v", f.path, errors.Unwrap(err))
		}
	}
	v.positive("connect_timeout", n.ConnectTimeout)
	if n.LeaseTTL < time.Second {
		v.bad("lease_ttl", "must be at least 1s, got %s", n.LeaseTTL)
	}
	return v.errs
}

var natsPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// SplitURLs returns the URLs of a comma-separated list (storage.nats.url),
// trimmed, without empty ones.
func SplitURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// validNATSURL reports whether the NATS client takes u as a server URL:
// nats://, tls://, ws:// or wss:// with a host, or a bare host:port.
func validNATSURL(u string) bool {
	if !strings.Contains(u, "://") {
		u = "nats://" + u
	}
	p, err := url.Parse(u)
	if err != nil || p.Hostname() == "" {
		return false
	}
	switch p.Scheme {
	case "nats", "tls":
		return p.Path == "" || p.Path == "/"
	case "ws", "wss":
		return true
	}
	return false
}

func (t Trainer) validate() []error {
	v := fields{at: "trainer"}
	if t.MinPairs < 20 {
		v.bad("min_pairs", "must be at least 20 (a holdout set needs pairs), got %d", t.MinPairs)
	}
	v.atLeast("retrain_every", t.RetrainEvery, 1)
	v.atLeast("max_train_pairs", t.MaxTrainPairs, 1)
	v.notNegativeInt("backtest_pairs", t.BacktestPairs)
	v.atLeast("threads", t.Threads, 1)
	v.atLeast("dim", t.Dim, 1)
	v.notNegativeInt("hidden", t.Hidden)
	v.atLeast("max_epochs", t.MaxEpochs, 1)
	v.positive("interval", t.Interval)
	v.notNegative("cooldown", t.Cooldown)
	return v.errs
}

func (r Router) validate() []error {
	v := fields{at: "router"}
	if t := r.AgreementThreshold; !(t > 0 && t <= 1) {
		v.bad("agreement_threshold", "must be in (0,1], got %v", t)
	}
	if c := r.Confidence; !(c > 0.5 && c < 1) {
		v.bad("confidence", "must be in (0.5,1), got %v", c)
	}
	if c := r.DemotionConfidence; !(c > 0.5 && c < 1) {
		v.bad("demotion_confidence", "must be in (0.5,1), got %v", c)
	}
	v.atLeast("min_samples", r.MinSamples, 1)
	if s := r.ShadowRate; !(s >= 0 && s <= 1) {
		v.bad("shadow_rate", "must be in [0,1], got %v", s)
	}
	if s := r.ExploreRate; !(s >= 0 && s <= 1) {
		v.bad("explore_rate", "must be in [0,1], got %v", s)
	}
	if s := r.ShadowMaxRate; !(s >= 0) {
		v.bad("shadow_max_rate", "must not be negative, got %v", s)
	}
	v.atLeast("shadow_queue_size", r.ShadowQueueSize, 1)
	v.atLeast("shadow_workers", r.ShadowWorkers, 1)
	return v.errs
}

func (m Metrics) validate() []error {
	v := fields{at: "metrics"}
	v.atLeast("max_domains", m.MaxDomains, 1)
	return v.errs
}

func (p Pricing) validate() []error {
	v := fields{at: "pricing"}
	for m, pr := range p.Models {
		if pr.Input < 0 || pr.Output < 0 {
			v.bad("models."+m, "prices must not be negative, got %v/%v", pr.Input, pr.Output)
		}
	}
	return v.errs
}

func (l Log) validate() []error {
	v := fields{at: "log"}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.bad("level", "must be one of debug, info, warn, error, got %q", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		v.bad("format", "must be text or json, got %q", l.Format)
	}
	return v.errs
}

// validate checks one domain; at is its path, e.g. "domains[0]".
func (d Domain) validate(at string) []error {
	v := fields{at: at}
	if !ValidDomainName(d.Name) {
		v.bad("name", "must be 1-64 characters of A-Z a-z 0-9 . _ - (not . or ..), got %q", d.Name)
	}
	if d.SystemPromptRegex != "" {
		if _, err := regexp.Compile(d.SystemPromptRegex); err != nil {
			v.bad("system_prompt_regex", "invalid regex: %v", err)
		}
	}
	if d.SystemPromptPrefix == "" && d.SystemPromptRegex == "" && d.Model == "" {
		v.bad("", "needs at least one of system_prompt_prefix, system_prompt_regex, model")
	}
	return v.errs
}

func validateDomains(ds []Domain) []error {
	var errs []error
	seen := map[string]bool{}
	for i, d := range ds {
		at := fmt.Sprintf("domains[%d]", i)
		errs = append(errs, d.validate(at)...)
		if ValidDomainName(d.Name) && seen[d.Name] {
			errs = append(errs, &FieldError{Field: at + ".name", Msg: fmt.Sprintf("duplicate domain %q", d.Name)})
		}
		seen[d.Name] = true
	}
	return errs
}

// loopbackOnly reports whether addr listens on a loopback interface only.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
