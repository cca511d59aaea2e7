package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultIsValid(t *testing.T) {
	cfg, err := Load("", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config is invalid: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8080" || cfg.Teacher.URL != "https://api.openai.com/v1" || cfg.Gateway.MaxBodySize != 8*MiB ||
		cfg.Gateway.ShutdownDelay != 0 {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
}

func TestLoadFull(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.MaxBodySize != 2*MiB {
		t.Errorf("max_body_size = %v, want 2MiB", cfg.Gateway.MaxBodySize)
	}
	if cfg.Gateway.ShutdownDelay != 15*time.Second || cfg.Gateway.ShutdownTimeout != 30*time.Second {
		t.Errorf("shutdown delay/timeout = %v/%v, want 15s and the default 30s", cfg.Gateway.ShutdownDelay, cfg.Gateway.ShutdownTimeout)
	}
	if cfg.Teacher.FirstByteTimeout != 45*time.Second || cfg.Teacher.Timeout != 600*time.Second {
		t.Errorf("timeouts = %v/%v, want 45s and the default 600s", cfg.Teacher.FirstByteTimeout, cfg.Teacher.Timeout)
	}
	if len(cfg.Domains) != 2 || cfg.Domains[1].Model != "gpt-4o-mini" {
		t.Errorf("domains = %+v", cfg.Domains)
	}
}

// TestMergeKeys: a YAML merge (<<: *anchor) is read as yaml.v3 reads it,
// and what it merges is checked like the rest.
func TestMergeKeys(t *testing.T) {
	cfg, err := Load("testdata/merge-ok.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Domains) != 2 || cfg.Domains[1].Name != "b" || cfg.Domains[1].Model != "m" {
		t.Errorf("domains = %+v, want b to take model m from a", cfg.Domains)
	}
}

// TestOpenRelayOptIn: a gateway without keys on a public address loads only
// when the operator says so.
func TestOpenRelayOptIn(t *testing.T) {
	cfg, err := Load("testdata/open-relay-allowed.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("allow_unauthenticated: %v", err)
	}
}

func TestPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"file", nil, "http://vllm.internal:8000/v1"},
		{"openai env beats file", map[string]string{"OPENAI_BASE_URL": "http://a/v1"}, "http://a/v1"},
		{"understudy env beats openai env", map[string]string{"OPENAI_BASE_URL": "http://a/v1", "UNDERSTUDY_TEACHER_URL": "http://b/v1"}, "http://b/v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("testdata/full.yaml", env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Teacher.URL != tc.want {
				t.Errorf("teacher.url = %q, want %q", cfg.Teacher.URL, tc.want)
			}
		})
	}
}

func TestEnvTypes(t *testing.T) {
	cfg, err := Load("", env(map[string]string{
		"UNDERSTUDY_LISTEN":                            "127.0.0.1:1",
		"UNDERSTUDY_ADMIN_LISTEN":                      "127.0.0.1:2",
		"UNDERSTUDY_DATA_DIR":                          "/tmp/x",
		"UNDERSTUDY_GATEWAY_API_KEYS":                  "k1, k2",
		"UNDERSTUDY_GATEWAY_MAX_BODY_SIZE":             "1MiB",
		"UNDERSTUDY_GATEWAY_MAX_AUTO_DOMAINS":          "0",
		"UNDERSTUDY_GATEWAY_SHUTDOWN_DELAY":            "12s",
		"UNDERSTUDY_TEACHER_TIMEOUT":                   "9s",
		"UNDERSTUDY_TEACHER_RETRIES":                   "0",
		"UNDERSTUDY_TEACHER_PASS_CLIENT_AUTHORIZATION": "true",
		"OPENAI_API_KEY":                               "sk-env",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1" || cfg.Admin.Listen != "127.0.0.1:2" || cfg.DataDir != "/tmp/x" ||
		strings.Join(cfg.Gateway.APIKeys, "|") != "k1|k2" || cfg.Gateway.MaxBodySize != MiB || cfg.Gateway.MaxAutoDomains != 0 ||
		cfg.Gateway.ShutdownDelay != 12*time.Second ||
		cfg.Teacher.Timeout != 9*time.Second || cfg.Teacher.Retries != 0 || !cfg.Teacher.PassClientAuthorization ||
		cfg.Teacher.APIKey != "sk-env" {
		t.Errorf("env not applied: %+v", cfg)
	}
	if _, err := Load("", env(map[string]string{"UNDERSTUDY_TEACHER_TIMEOUT": "later"})); err == nil ||
		!strings.Contains(err.Error(), "UNDERSTUDY_TEACHER_TIMEOUT") {
		t.Errorf("bad env value: err = %v, want it to name the variable", err)
	}
}

// TestStorageNATS: the nats backend's settings load from a file and from
// the environment (UNDERSTUDY_STORAGE_BACKEND, UNDERSTUDY_STORAGE_NATS_*),
// the environment winning, and a cluster's URLs validate.
func TestStorageNATS(t *testing.T) {
	d := Default()
	if d.Storage.Backend != BackendBadger || d.Storage.NATS.Replicas != 1 || d.Storage.NATS.Prefix != "understudy" ||
		d.Storage.NATS.ConnectTimeout != 10*time.Second {
		t.Errorf("defaults: backend %q, nats %+v", d.Storage.Backend, d.Storage.NATS)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("storage:\n  backend: nats\n  nats:\n    url: nats://file:4222\n    replicas: 3\n    token: from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, env(map[string]string{
		"UNDERSTUDY_STORAGE_NATS_URL":             "nats://n1:4222, nats://n2:4222,tls://n3:4222",
		"UNDERSTUDY_STORAGE_NATS_PREFIX":          "prod-eu",
		"UNDERSTUDY_STORAGE_NATS_CONNECT_TIMEOUT": "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := cfg.Storage.NATS
	if cfg.Storage.Backend != BackendNATS || n.Replicas != 3 || n.Token != "from-file" || n.Prefix != "prod-eu" || n.ConnectTimeout != 3*time.Second {
		t.Errorf("storage = %+v", cfg.Storage)
	}
	if got := SplitURLs(n.URL); !reflect.DeepEqual(got, []string{"nats://n1:4222", "nats://n2:4222", "tls://n3:4222"}) {
		t.Errorf("urls = %q", got)
	}
	cfg, err = Load("", env(map[string]string{"UNDERSTUDY_STORAGE_BACKEND": "nats"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "storage.nats.url: is required") {
		t.Errorf("backend nats from the environment without a url: %v", err)
	}
	out, err := (&Config{Storage: Storage{NATS: StorageNATS{Password: "secret-pass-1234", Token: "secret-token-5678"}}}).MarshalRedacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret-") {
		t.Errorf("redacted config shows a NATS secret:\n%s", out)
	}
}

// TestBadConfigs loads every testdata/*.bad.yaml and checks the error names
// the field.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-key.bad.yaml":              "line 3: teacher.urll: unknown setting (did you mean url?)",
		"breaker-typo.bad.yaml":             "line 3: teacher.breaker.consecutive_falures: unknown setting (did you mean consecutive_failures?)",
		"trainer-cooldown.bad.yaml":         `line 2: trainer.cooldown: invalid duration "5 minutes": want a number with a unit`,
		"gateway-max-conns.bad.yaml":        `line 2: gateway.max_conns: want a whole number, got "lots"`,
		"domain-key.bad.yaml":               "line 4: domains[1].nmae: unknown setting (did you mean name?)",
		"domain-merge-key.bad.yaml":         "line 7: domains[1].modle: unknown setting (did you mean model?)",
		"router-scalar.bad.yaml":            `line 1: router: want a section of settings (agreement_threshold, confidence,`,
		"teacher-url.bad.yaml":              `teacher.url: must be an http:// or https:// URL, got "ftp://example.com"`,
		"teacher-timeout.bad.yaml":          "teacher.timeout: must be positive, got 0s",
		"teacher-timeout-type.bad.yaml":     `line 2: teacher.timeout: invalid duration "soon"`,
		"body-size.bad.yaml":                `gateway.max_body_size: invalid size "lots"`,
		"admin-token.bad.yaml":              `admin.token: is required when admin.listen ("0.0.0.0:8081") is not a loopback address`,
		"listen.bad.yaml":                   `listen: must be host:port, got "8080"`,
		"log-level.bad.yaml":                `log.level: must be one of debug, info, warn, error, got "loud"`,
		"domain-name.bad.yaml":              `domains[0].name: must be 1-64 characters`,
		"domain-regex.bad.yaml":             "domains[0].system_prompt_regex: invalid regex",
		"domain-rule.bad.yaml":              "domains[0]: needs at least one of",
		"domain-dup.bad.yaml":               `domains[1].name: duplicate domain "a"`,
		"storage-queue.bad.yaml":            "storage.queue_size: must be at least 1, got 0",
		"router-threshold.bad.yaml":         "router.agreement_threshold: must be in (0,1], got 1.5",
		"router-demotion.bad.yaml":          "router.demotion_confidence: must be in (0.5,1), got 1",
		"storage-queue-bytes.bad.yaml":      "storage.queue_bytes: must be at least 1MiB, got 1KiB",
		"storage-key.bad.yaml":              "storage.encryption_key_file: cannot read /nonexistent/key: no such file or directory",
		"open-relay.bad.yaml":               `gateway.api_keys: are required when listen ("0.0.0.0:8080") is not a loopback address`,
		"breaker-ratio.bad.yaml":            "teacher.breaker.failure_ratio: must be in (0,1], got 1.5",
		"gateway-max-auto-domains.bad.yaml": "gateway.max_auto_domains: must not be negative, got -1",
		"gateway-shutdown-delay.bad.yaml":   "gateway.shutdown_delay: must not be negative, got -5s",
		"storage-backend.bad.yaml":          `storage.backend: must be badger or nats, got "postgres"`,
		"storage-nats-url.bad.yaml":         "storage.nats.url: is required when storage.backend is nats",
		"storage-nats-replicas.bad.yaml":    "storage.nats.replicas: must be in 1..5 (1 for a single server, 3 for a cluster), got 7",
		"storage-nats-typo.bad.yaml":        "line 5: storage.nats.repilcas: unknown setting (did you mean replicas?)",
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) != len(want) {
		t.Errorf("%d bad files, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			msg, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected message for %s", f)
			}
			cfg, err := Load(f, env(nil))
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("error = %v, want it to contain %q", err, msg)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	cfg, err := Load("testdata/full.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.MarshalRedacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"admin-secret-token", "sk-gw-one-1234567890", "sk-upstream-abcdefghij"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("redacted config shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "****ghij") || !strings.Contains(string(out), "max_body_size: 2MiB") {
		t.Errorf("redacted config lacks masked key or size:\n%s", out)
	}
	// The redacted form must load back: it is what `config check` prints.
	path := filepath.Join(t.TempDir(), "out.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, env(nil)); err != nil {
		t.Errorf("redacted output does not load back: %v", err)
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]Size{"8MiB": 8 * MiB, "512KB": 512000, "1024": 1024, "3 GiB": 3 * GiB, "10B": 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "5XB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want error", in)
		}
	}
}

// TestREADMEExample keeps the README's configuration example loadable.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "```yaml\nlisten:"
	i := strings.Index(string(b), start)
	if i < 0 {
		t.Fatal("README has no configuration example")
	}
	rest := string(b)[i+len("```yaml\n"):]
	path := filepath.Join(t.TempDir(), "readme.yaml")
	if err := os.WriteFile(path, []byte(rest[:strings.Index(rest, "```")]), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, env(nil))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Errorf("README's example: %v", err)
	}
}

// TestREADMEDefaults: the README's configuration example states every
// default; it must be Default(), apart from the domains and priced models it
// shows as examples.
func TestREADMEDefaults(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "```yaml\nlisten:"
	i := strings.Index(string(b), start)
	if i < 0 {
		t.Fatal("README has no configuration example")
	}
	rest := string(b)[i+len("```yaml\n"):]
	got := Default()
	if err := got.parseYAML([]byte(rest[:strings.Index(rest, "```")])); err != nil {
		t.Fatal(err)
	}
	got.Domains, got.Pricing.Models = nil, nil
	if len(got.Gateway.APIKeys) == 0 {
		got.Gateway.APIKeys = nil // "api_keys: []"
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		for _, d := range diff(reflect.ValueOf(*got), reflect.ValueOf(*want), "") {
			t.Errorf("README states %s", d)
		}
	}
}

// diff lists the fields where a and b, values of one struct type, differ.
func diff(a, b reflect.Value, path string) []string {
	if a.Kind() != reflect.Struct {
		if reflect.DeepEqual(a.Interface(), b.Interface()) {
			return nil
		}
		return []string{fmt.Sprintf("%s: %v, Default() %v", path, a.Interface(), b.Interface())}
	}
	var out []string
	for i := range a.NumField() {
		out = append(out, diff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
	}
	return out
}

// TestFieldErrors: each section's checks name the field by its YAML path,
// and a NaN is out of every range.
func TestFieldErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"data_dir: ''", "data_dir: must not be empty"},
		{"admin: {listen: nowhere, token: t}", `admin.listen: must be host:port, got "nowhere"`},
		{"gateway: {api_keys: [' ']}", "gateway.api_keys[0]: must not be empty"},
		{"teacher: {breaker: {window: 10ms}}", "teacher.breaker.window: must be at least 1s, got 10ms"},
		{"trainer: {min_pairs: 0}", "trainer.min_pairs: must be at least 20 (a holdout set needs pairs), got 0"},
		{"trainer: {cooldown: -1s}", "trainer.cooldown: must not be negative, got -1s"},
		{"router: {confidence: 0.5}", "router.confidence: must be in (0.5,1), got 0.5"},
		{"router: {confidence: .nan}", "router.confidence: must be in (0.5,1), got NaN"},
		{"router: {demotion_confidence: .nan}", "router.demotion_confidence: must be in (0.5,1), got NaN"},
		{"router: {agreement_threshold: .nan}", "router.agreement_threshold: must be in (0,1], got NaN"},
		{"router: {shadow_rate: .nan}", "router.shadow_rate: must be in [0,1], got NaN"},
		{"router: {shadow_max_rate: .nan}", "router.shadow_max_rate: must not be negative, got NaN"},
		{"metrics: {max_domains: 0}", "metrics.max_domains: must be at least 1, got 0"},
		{"pricing: {models: {m: {input: -1}}}", "pricing.models.m: prices must not be negative, got -1/0"},
		{"log: {format: xml}", `log.format: must be text or json, got "xml"`},
		{"domains: [{name: a, model: m}, {name: b}]", "domains[1]: needs at least one of"},
		{"storage: {backend: nats, nats: {url: 'http://n:4222'}}", `storage.nats.url: "http://n:4222" is not a NATS server URL`},
		{"storage: {backend: nats, nats: {url: 'nats://a:4222,tls://:4222'}}", `storage.nats.url: "tls://:4222" is not a NATS server URL`},
		{"storage: {backend: nats, nats: {url: n, replicas: 0}}", "storage.nats.replicas: must be in 1..5"},
		{"storage: {backend: nats, nats: {url: n, prefix: a.b}}", `storage.nats.prefix: must be 1-32 characters of A-Z a-z 0-9 _ -, got "a.b"`},
		{"storage: {backend: nats, nats: {url: n, token: t, user: u, password: p}}", "storage.nats: set at most one way to authenticate"},
		{"storage: {backend: nats, nats: {url: n, user: u}}", "storage.nats.password: is required with user"},
		{"storage: {backend: nats, nats: {url: n, password: p}}", "storage.nats.user: is required with password"},
		{"storage: {backend: nats, nats: {url: n, cert_file: /dev/null}}", "storage.nats.key_file: is required with cert_file"},
		{"storage: {backend: nats, nats: {url: n, ca_file: /nonexistent/ca.pem}}", "storage.nats.ca_file: cannot read /nonexistent/ca.pem: no such file or directory"},
		{"storage: {backend: nats, nats: {url: n, connect_timeout: 0s}}", "storage.nats.connect_timeout: must be positive, got 0s"},
		// The nats section is checked only when it is used.
		{"storage: {backend: badger, nats: {replicas: 9}, queue_size: 0}", "storage.queue_size: must be at least 1, got 0"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			cfg := Default()
			if err := cfg.parseYAML([]byte(tc.yaml)); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != 1 {
				t.Errorf("%d errors, want 1: %v", n, err)
			}
		})
	}
}

// TestRedactedMasksEveryTaggedField sets every field tagged secret:"true"
// and checks that none shows in MarshalRedacted's output: a new secret is
// masked by tagging it, and a tag on a type that cannot be masked fails here.
func TestRedactedMasksEveryTaggedField(t *testing.T) {
	cfg := Default()
	var secrets []string
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		for i := range v.NumField() {
			f, fv := v.Type().Field(i), v.Field(i)
			name := path + "." + f.Name
			switch {
			case f.Tag.Get("secret") == "true":
				s := "secret-of-" + strings.ToLower(name[1:]) + "-0123456789"
				secrets = append(secrets, s)
				switch fv.Kind() {
				case reflect.String:
					fv.SetString(s)
				case reflect.Slice:
					fv.Set(reflect.Append(reflect.MakeSlice(fv.Type(), 0, 1), reflect.ValueOf(s).Convert(fv.Type().Elem())))
				default:
					t.Fatalf("%s is tagged secret but is a %s", name, fv.Type())
				}
			case fv.Kind() == reflect.Struct:
				fill(fv, name)
			}
		}
	}
	fill(reflect.ValueOf(cfg).Elem(), "")
	if len(secrets) < 3 {
		t.Fatalf("found %d secret fields, want at least admin.token, gateway.api_keys, teacher.api_key", len(secrets))
	}
	out, err := cfg.MarshalRedacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(string(out), s) {
			t.Errorf("redacted config shows %q", s)
		}
	}
	if n := strings.Count(string(out), "****6789"); n != len(secrets) {
		t.Errorf("%d masked values ending 6789, want %d:\n%s", n, len(secrets), out)
	}
	if cfg.Admin.Token != secrets[0] {
		t.Errorf("MarshalRedacted changed the configuration: admin.token = %q", cfg.Admin.Token)
	}
}

// TestRedactedFindsNestedSecrets: a secret is masked wherever it sits, in
// a list or a map of structs too, and the original is left as it was.
func TestRedactedFindsNestedSecrets(t *testing.T) {
	type inner struct {
		Key  string   `yaml:"key" secret:"true"`
		Keys []string `yaml:"keys" secret:"true"`
		Name string   `yaml:"name"`
	}
	type outer struct {
		List []inner          `yaml:"list"`
		Map  map[string]inner `yaml:"map"`
		One  inner            `yaml:"one"`
	}
	in := outer{
		List: []inner{{Key: "list-secret-1234", Name: "kept"}},
		Map:  map[string]inner{"m": {Keys: []string{"map-secret-5678", ""}}},
		One:  inner{Key: "short"},
	}
	got := redacted(reflect.ValueOf(in)).Interface().(outer)
	want := outer{
		List: []inner{{Key: "****1234", Name: "kept"}},
		Map:  map[string]inner{"m": {Keys: []string{"****5678", ""}}},
		One:  inner{Key: "****"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("redacted = %+v, want %+v", got, want)
	}
	if in.List[0].Key != "list-secret-1234" || in.Map["m"].Keys[0] != "map-secret-5678" {
		t.Errorf("the original was changed: %+v", in)
	}
}

func TestValidDomainName(t *testing.T) {
	for name, want := range map[string]bool{
		"spam": true, "a.b": true, "...": true, "x_y-z.1": true, strings.Repeat("a", 64): true,
		"": false, ".": false, "..": false, "a/b": false, "a b": false, "é": false, strings.Repeat("a", 65): false,
	} {
		if got := ValidDomainName(name); got != want {
			t.Errorf("ValidDomainName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestPricingOf(t *testing.T) {
	p := Pricing{Models: map[string]Price{"gpt-4o": {Input: 1, Output: 2}, "mine": {Input: 3, Output: 4}}, Default: Price{Input: 9}}
	for model, want := range map[string]Price{
		"gpt-4o":                 {Input: 1, Output: 2},     // configured wins over the list
		"gpt-4o-2024-08-06":      {Input: 1, Output: 2},     // a snapshot of a configured model
		"gpt-4o-mini":            ListPrices["gpt-4o-mini"], // the list, not the configured gpt-4o
		"gpt-4o-mini-2024-07-18": ListPrices["gpt-4o-mini"],
		"mine":                   {Input: 3, Output: 4},
		"llama-3-70b":            {Input: 9},
		"gpt-4oX":                {Input: 9}, // not a snapshot of gpt-4o
	} {
		if got := p.Of(model); got != want {
			t.Errorf("Of(%q) = %+v, want %+v", model, got, want)
		}
	}
}
