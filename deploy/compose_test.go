package deploy

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/testnet"
	"github.com/understudy-dev/understudy/storage/jetstream"
)

// composeFile is what the tests read of a compose file: the fields the
// files here use. `docker compose config` is not at hand, so the tests
// check by hand what it would, and more: that services, ports, mounts and
// settings refer to each other consistently.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Hostname    string            `yaml:"hostname"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   dependsOn         `yaml:"depends_on"`
	// StopGracePeriod is how long docker waits after SIGTERM before it
	// kills the container.
	StopGracePeriod string `yaml:"stop_grace_period"`
	Healthcheck     *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// dependsOn maps a service's dependencies to their condition, from either
// of compose's spellings (a list of names, or a map with conditions).
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	switch n.Kind {
	case yaml.SequenceNode:
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, s := range names {
			(*d)[s] = "service_started"
		}
		return nil
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		for s, c := range m {
			(*d)[s] = c.Condition
		}
		return nil
	}
	return fmt.Errorf("line %d: depends_on must be a list or a map", n.Line)
}

// interpolation is compose's variable syntax: $$, ${VAR}, ${VAR:-default},
// ${VAR-default}, ${VAR:?error}, ${VAR?error}.
var interpolation = regexp.MustCompile(`\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})`)

// interpolate substitutes env into text as compose does.
func interpolate(text string, env map[string]string) (string, error) {
	var errs []string
	out := interpolation.ReplaceAllStringFunc(text, func(m string) string {
		if m == "$$" {
			return "$"
		}
		s := interpolation.FindStringSubmatch(m)
		name, op, arg := s[1], s[2], s[3]
		v, set := env[name]
		unset := !set || (strings.HasPrefix(op, ":") && v == "")
		switch {
		case !unset:
			return v
		case strings.HasSuffix(op, "-"):
			return arg
		case strings.HasSuffix(op, "?"):
			errs = append(errs, name+": "+arg)
		}
		return ""
	})
	if len(errs) > 0 {
		return "", fmt.Errorf("required variables unset: %s", strings.Join(errs, "; "))
	}
	return out, nil
}

// readCompose reads a compose file of this directory with env substituted.
func readCompose(t *testing.T, name string, env map[string]string) *composeFile {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	text, err := interpolate(string(raw), env)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var c composeFile
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &c
}

// composeEnv is what a user exports before `docker compose up`.
var composeEnv = map[string]string{
	"OPENAI_API_KEY":              "sk-teacher",
	"UNDERSTUDY_GATEWAY_API_KEYS": "sk-client-1,sk-client-2",
}

// mounts maps a service's bind-mounted container paths to the files here,
// and its named volumes' container paths to their names.
func (s composeService) mounts() (binds, named map[string]string) {
	binds, named = map[string]string{}, map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		if strings.HasPrefix(parts[0], ".") || strings.HasPrefix(parts[0], "/") {
			binds[parts[1]] = filepath.Clean(parts[0])
		} else {
			named[parts[1]] = parts[0]
		}
	}
	return binds, named
}

// imageEnv reads the ENV instructions of a Dockerfile: what the image sets
// before the compose file's environment.
func imageEnv(t *testing.T, dockerfile string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "ENV" {
			continue
		}
		for _, kv := range f[1:] {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// gatewayConfig loads the config of a gateway service as the gateway would
// (config.Load: the image's environment, then the service's), and
// returns it with the environment variables Load asks for.
func gatewayConfig(t *testing.T, name string, s composeService) (*config.Config, map[string]bool) {
	t.Helper()
	if s.Build == nil || s.Build.Dockerfile == "" {
		t.Fatalf("service %s: no build.dockerfile", name)
	}
	dockerfile := filepath.Join(s.Build.Context, s.Build.Dockerfile)
	env := imageEnv(t, dockerfile)
	for k, v := range s.Environment {
		env[k] = v
	}
	asked := map[string]bool{}
	cfg, err := config.Load("", func(k string) (string, bool) {
		asked[k] = true
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("service %s: loading its config: %v", name, err)
	}
	return cfg, asked
}

// checkUnknownEnv fails for an UNDERSTUDY_ or OPENAI_ variable that no
// setting reads: a misspelt name would be ignored without a word.
func checkUnknownEnv(t *testing.T, where string, env map[string]string, asked map[string]bool) {
	t.Helper()
	for k := range env {
		if (strings.HasPrefix(k, config.EnvPrefix) || strings.HasPrefix(k, "OPENAI_")) && !asked[k] {
			t.Errorf("%s: environment variable %s sets no setting (config/env.go: the YAML path upper-cased, dots as underscores)", where, k)
		}
	}
}

// gatewayServices are the services built from the project's Dockerfile.
func (c *composeFile) gatewayServices() []string {
	var out []string
	for name, s := range c.Services {
		if s.Build != nil && strings.HasSuffix(s.Build.Dockerfile, "deploy/Dockerfile") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// TestComposeFiles checks what both compose files share: every gateway's
// settings (image environment plus the service's) load and validate as the
// gateway's own config.Validate sees them, and name only settings that
// exist; the gateway keys are required; ports publish on loopback only;
// bind-mounted files exist; named volumes are declared; dependencies
// exist.
func TestComposeFiles(t *testing.T) {
	for _, file := range []string{"docker-compose.yml", "docker-compose.cluster.yml"} {
		t.Run(file, func(t *testing.T) {
			c := readCompose(t, file, composeEnv)
			if len(c.gatewayServices()) == 0 {
				t.Fatal("no service builds deploy/Dockerfile")
			}
			for _, name := range c.gatewayServices() {
				cfg, asked := gatewayConfig(t, name, c.Services[name])
				checkUnknownEnv(t, "service "+name, c.Services[name].Environment, asked)
				if err := cfg.Validate(); err != nil {
					t.Errorf("service %s: its config does not validate:\n%v", name, err)
				}
				if len(cfg.Gateway.APIKeys) == 0 {
					t.Errorf("service %s: no gateway.api_keys", name)
				}
			}
			// Without the client keys compose refuses to start, rather than
			// the gateway failing (or running open) later.
			raw, _ := os.ReadFile(file)
			if _, err := interpolate(string(raw), map[string]string{"OPENAI_API_KEY": "sk"}); err == nil || !strings.Contains(err.Error(), "UNDERSTUDY_GATEWAY_API_KEYS") {
				t.Errorf("without UNDERSTUDY_GATEWAY_API_KEYS set, the file interpolates (%v): want ${UNDERSTUDY_GATEWAY_API_KEYS:?...}", err)
			}

			for name, s := range c.Services {
				for _, p := range s.Ports {
					if parts := strings.Split(p, ":"); len(parts) != 3 || !net.ParseIP(parts[0]).IsLoopback() {
						t.Errorf("service %s publishes %q: want 127.0.0.1:HOST:CONTAINER (published on loopback only: the gateway spends the teacher's key of whoever reaches it, Grafana and Prometheus show its traffic)", name, p)
					}
				}
				binds, named := s.mounts()
				for dst, src := range binds {
					if _, err := os.Stat(src); err != nil {
						t.Errorf("service %s mounts %s at %s: %v", name, src, dst, err)
					}
				}
				for _, vol := range named {
					if _, ok := c.Volumes[vol]; !ok {
						t.Errorf("service %s uses volume %s, not declared under volumes:", name, vol)
					}
				}
				for dep := range s.DependsOn {
					if _, ok := c.Services[dep]; !ok {
						t.Errorf("service %s depends on %s, which is no service", name, dep)
					}
				}
			}
		})
	}
}

// TestComposeCluster checks docker-compose.cluster.yml's topology: three
// NATS servers, each parsed by nats-server's own option parser (the file
// and flags the container runs with), forming one JetStream cluster; the
// gateway replicas configured for it with 3 copies and waiting for each
// server's health; the load balancer sending to exactly the replicas and
// checking their /readyz; Prometheus scraping each replica (promtool
// checks its file); Grafana provisioned as in docker-compose.yml. Then it
// starts the three servers from those options on loopback and opens the
// gateway's own JetStream store on them with the replicas' settings:
// every stream and bucket it makes has 3 copies.
func TestComposeCluster(t *testing.T) {
	const file = "docker-compose.cluster.yml"
	c := readCompose(t, file, composeEnv)

	// NATS servers.
	natsOpts := map[string]*server.Options{}
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			natsOpts[name] = natsServerOptions(t, name, s)
		}
	}
	if len(natsOpts) != 3 {
		t.Fatalf("%d services run the nats image, want 3 (a JetStream cluster that survives the loss of one)", len(natsOpts))
	}
	natsNames := slices.Sorted(maps.Keys(natsOpts))
	var clusterName string
	clientPort := 0
	for _, name := range natsNames {
		o, s := natsOpts[name], c.Services[name]
		if !o.JetStream {
			t.Errorf("%s: JetStream is off", name)
		}
		if o.ServerName != name {
			t.Errorf("%s: server name %q, want its service name (JetStream needs unique names)", name, o.ServerName)
		}
		_, named := s.mounts()
		if named[o.StoreDir] == "" {
			t.Errorf("%s: JetStream's store_dir %q is not a named volume's mount (%v): its data would go with the container", name, o.StoreDir, s.Volumes)
		}
		for _, other := range natsNames {
			if other != name && named[o.StoreDir] != "" && slices.Contains(c.Services[other].Volumes, named[o.StoreDir]+":"+o.StoreDir) {
				t.Errorf("%s and %s share the volume %s", name, other, named[o.StoreDir])
			}
		}
		if clusterName == "" {
			clusterName = o.Cluster.Name
		}
		if o.Cluster.Name == "" || o.Cluster.Name != clusterName || o.Cluster.Port == 0 {
			t.Errorf("%s: cluster name %q port %d, want one named cluster", name, o.Cluster.Name, o.Cluster.Port)
		}
		routed := map[string]bool{name: true}
		for _, r := range o.Routes {
			if _, ok := natsOpts[r.Hostname()]; !ok || r.Port() != strconv.Itoa(natsOpts[r.Hostname()].Cluster.Port) {
				t.Errorf("%s: route %s is not another server's cluster port", name, r)
			}
			routed[r.Hostname()] = true
		}
		if len(routed) != len(natsOpts) {
			t.Errorf("%s routes to %v: want every server", name, o.Routes)
		}
		if clientPort == 0 {
			clientPort = o.Port
		}
		if s.Healthcheck == nil || !slices.ContainsFunc(s.Healthcheck.Test, func(a string) bool {
			return strings.Contains(a, fmt.Sprintf(":%d/healthz", o.HTTPPort))
		}) {
			t.Errorf("%s: no health check on its monitoring port's /healthz (:%d): %+v", name, o.HTTPPort, s.Healthcheck)
		}
	}

	// Gateway replicas.
	gateways := c.gatewayServices()
	if len(gateways) < 2 {
		t.Fatalf("gateway replicas %v: want at least 2", gateways)
	}
	var natsCfg *config.StorageNATS
	apiPort := ""
	for _, name := range gateways {
		cfg, _ := gatewayConfig(t, name, c.Services[name])
		if cfg.Storage.Backend != config.BackendNATS {
			t.Errorf("%s: storage.backend %q, want nats", name, cfg.Storage.Backend)
		}
		var hosts []string
		for _, u := range config.SplitURLs(cfg.Storage.NATS.URL) {
			pu, err := url.Parse(u)
			if err != nil || pu.Port() != strconv.Itoa(clientPort) {
				t.Errorf("%s: NATS URL %q is not a server's client port %d", name, u, clientPort)
				continue
			}
			hosts = append(hosts, pu.Hostname())
		}
		if slices.Sort(hosts); !slices.Equal(hosts, natsNames) {
			t.Errorf("%s: storage.nats.url names %v, want every NATS server %v", name, hosts, natsNames)
		}
		if cfg.Storage.NATS.Replicas != len(natsNames) {
			t.Errorf("%s: storage.nats.replicas %d, want %d (one copy per server)", name, cfg.Storage.NATS.Replicas, len(natsNames))
		}
		for _, n := range natsNames {
			if c.Services[name].DependsOn[n] != "service_healthy" {
				t.Errorf("%s does not wait for %s to be healthy (depends_on: %v)", name, n, c.Services[name].DependsOn)
			}
		}
		if natsCfg == nil {
			natsCfg = &cfg.Storage.NATS
		} else if *natsCfg != cfg.Storage.NATS {
			t.Errorf("%s: storage.nats differs from the other replicas' (%+v, %+v): every replica must use the same", name, cfg.Storage.NATS, *natsCfg)
		}
		_, port, _ := net.SplitHostPort(cfg.Listen)
		if apiPort != "" && port != apiPort {
			t.Errorf("%s listens on %s, the other replicas on %s", name, port, apiPort)
		}
		apiPort = port
	}
	upstreams := make([]string, len(gateways))
	for i, g := range gateways {
		upstreams[i] = g + ":" + apiPort
	}

	// Load balancer.
	lb, ok := c.Services["lb"]
	if !ok {
		t.Fatal("no lb service")
	}
	binds, _ := lb.mounts()
	caddyfile := binds["/etc/caddy/Caddyfile"]
	if caddyfile == "" {
		t.Fatalf("lb does not mount a Caddyfile at /etc/caddy/Caddyfile: %v", lb.Volumes)
	}
	site := readCaddyfile(t, caddyfile)
	if got := slices.Sorted(slices.Values(site.upstreams)); !slices.Equal(got, upstreams) {
		t.Errorf("%s sends to %v, want the gateway replicas %v", caddyfile, got, upstreams)
	}
	if site.healthURI != "/readyz" {
		t.Errorf("%s: health_uri %q, want /readyz (503 as soon as a replica stops)", caddyfile, site.healthURI)
	}
	// A stopping replica serves on until the lb has seen its 503, and
	// docker lets it finish draining.
	seen := site.healthInterval + site.healthTimeout
	for _, name := range gateways {
		cfg, _ := gatewayConfig(t, name, c.Services[name])
		if d := cfg.Gateway.ShutdownDelay; d <= seen {
			t.Errorf("%s: gateway.shutdown_delay %v, want more than %s's health_interval + health_timeout (%v): requests that reach a closed port get a 502", name, d, caddyfile, seen)
		}
		grace, err := time.ParseDuration(c.Services[name].StopGracePeriod)
		if need := cfg.Gateway.ShutdownDelay + cfg.Gateway.ShutdownTimeout; err != nil || grace < need {
			t.Errorf("%s: stop_grace_period %q, want at least gateway.shutdown_delay + shutdown_timeout (%v): docker would kill it mid-drain", name, c.Services[name].StopGracePeriod, need)
		}
	}
	published := false
	for _, p := range lb.Ports {
		published = published || strings.HasSuffix(p, ":"+site.port)
	}
	if !published {
		t.Errorf("lb publishes %v, not the Caddyfile's port %s", lb.Ports, site.port)
	}
	for _, g := range gateways {
		if len(c.Services[g].Ports) > 0 {
			t.Errorf("%s publishes %v: clients go through the lb", g, c.Services[g].Ports)
		}
	}

	// Prometheus and Grafana.
	prom := c.Services["prometheus"]
	binds, _ = prom.mounts()
	promFile := ""
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			promFile = binds[v]
		}
	}
	if promFile == "" {
		t.Fatalf("prometheus's --config.file is not a mounted file here: %v, %v", prom.Command, prom.Volumes)
	}
	var promCfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, promFile, &promCfg)
	var targets []string
	for _, sc := range promCfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	if slices.Sort(targets); !slices.Equal(targets, upstreams) {
		t.Errorf("%s scrapes %v, want each replica %v", promFile, targets, upstreams)
	}
	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Error("promtool is not installed: make prometheus (or make test) installs it")
	} else if out, err := exec.Command(promtool, "check", "config", promFile).CombinedOutput(); err != nil {
		t.Errorf("promtool check config %s: %v\n%s", promFile, err, out)
	}
	single := readCompose(t, "docker-compose.yml", composeEnv)
	if !slices.Equal(c.Services["grafana"].Volumes[:2], single.Services["grafana"].Volumes[:2]) {
		t.Errorf("grafana mounts %v, docker-compose.yml's %v: want the same provisioning and dashboard", c.Services["grafana"].Volumes, single.Services["grafana"].Volumes)
	}

	if testing.Short() {
		t.Skip("starts a NATS cluster")
	}
	runCluster(t, natsNames, natsOpts, natsCfg)
}

// natsServerOptions parses a NATS service's command (the alpine image
// runs nats-server with it) with nats-server's own parser, its
// bind-mounted files read from here.
func natsServerOptions(t *testing.T, name string, s composeService) *server.Options {
	t.Helper()
	binds, _ := s.mounts()
	args := slices.Clone(s.Command)
	if len(args) == 0 || !strings.HasPrefix(args[0], "-") {
		t.Fatalf("%s: command %q: the nats image's entrypoint runs nats-server only with flags first", name, args)
	}
	for i, a := range args {
		if host, ok := binds[a]; ok {
			args[i] = host
		}
	}
	fs := flag.NewFlagSet("nats-server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noop := func() {}
	o, err := server.ConfigureOptions(fs, args, noop, noop, noop)
	if err != nil {
		t.Fatalf("%s: nats-server %s: %v", name, strings.Join(args, " "), err)
	}
	return o
}

// runCluster starts the NATS servers with their parsed options, moved to
// loopback ports (routes rewritten to them) and temporary stores, and opens
// the gateway's JetStream store on them as configured.
func runCluster(t *testing.T, names []string, opts map[string]*server.Options, nc *config.StorageNATS) {
	clusterAddr := map[string]string{}
	for _, n := range names {
		clusterAddr[n] = testnet.FreeAddr(t)
	}
	clientURL := map[string]string{}
	var servers []*server.Server
	for _, n := range names {
		o := opts[n].Clone()
		o.Host, o.Port, o.HTTPPort = "127.0.0.1", -1, 0
		host, port, _ := net.SplitHostPort(clusterAddr[n])
		o.Cluster.Host = host
		o.Cluster.Port, _ = strconv.Atoi(port)
		o.StoreDir = t.TempDir()
		o.JetStreamMaxStore = 1 << 30
		o.NoLog, o.NoSigs = true, true
		var routes []*url.URL
		for _, r := range opts[n].Routes {
			routes = append(routes, &url.URL{Scheme: r.Scheme, Host: clusterAddr[r.Hostname()]})
		}
		o.Routes = routes
		srv, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		servers = append(servers, srv)
	}
	for i, srv := range servers {
		if !srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("%s not ready in 30s", names[i])
		}
		clientURL[names[i]] = srv.ClientURL()
	}
	// A meta leader: the cluster has formed.
	for deadline := time.Now().Add(60 * time.Second); !slices.ContainsFunc(servers, (*server.Server).JetStreamIsLeader); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 60s: the servers did not form a cluster")
		}
	}

	// The replicas' URL, its hosts moved to where the servers listen.
	var urls []string
	for _, u := range config.SplitURLs(nc.URL) {
		pu, _ := url.Parse(u)
		urls = append(urls, clientURL[pu.Hostname()])
	}
	store, err := jetstream.Open(jetstream.Options{URL: strings.Join(urls, ","), Replicas: nc.Replicas, Prefix: nc.Prefix,
		ConnectTimeout: 60 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("opening the gateway's store on the cluster: %v", err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	}()

	conn, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	js, err := conn.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for info := range js.StreamsInfo() {
		n++
		if info.Config.Replicas != nc.Replicas || info.Cluster == nil || len(info.Cluster.Replicas)+1 != nc.Replicas {
			t.Errorf("stream %s: %d replicas configured, placed on %+v: want %d copies", info.Config.Name, info.Config.Replicas, info.Cluster, nc.Replicas)
		}
	}
	if n == 0 {
		t.Error("the store made no streams or buckets")
	}
	t.Logf("%d streams and buckets, each on %d of the %d servers", n, nc.Replicas, len(servers))
}

// caddySite is what the tests read of a Caddyfile: its one site's port,
// the reverse proxy's upstreams and health check.
type caddySite struct {
	port           string
	upstreams      []string
	healthURI      string
	healthInterval time.Duration
	healthTimeout  time.Duration
}

func readCaddyfile(t *testing.T, name string) caddySite {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var site caddySite
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch {
		case strings.HasPrefix(fields[0], ":") && fields[len(fields)-1] == "{":
			site.port = strings.TrimPrefix(fields[0], ":")
		case fields[0] == "reverse_proxy":
			for _, u := range fields[1:] {
				if u != "{" {
					site.upstreams = append(site.upstreams, u)
				}
			}
		case fields[0] == "health_uri" && len(fields) == 2:
			site.healthURI = fields[1]
		case fields[0] == "health_interval" && len(fields) == 2:
			site.healthInterval = caddyDuration(t, name, fields[1])
		case fields[0] == "health_timeout" && len(fields) == 2:
			site.healthTimeout = caddyDuration(t, name, fields[1])
		}
	}
	if site.port == "" || len(site.upstreams) == 0 {
		t.Fatalf("%s: no site with a port, or no reverse_proxy upstreams", name)
	}
	return site
}

// caddyDuration parses a Caddyfile duration (Go's syntax, and d for days,
// which these files do not use).
func caddyDuration(t *testing.T, name, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}
