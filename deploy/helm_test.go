package deploy

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"

	"github.com/understudy-dev/understudy/config"
)

const chartDir = "helm/understudy"

// helmBin is the helm the tests run: $HELM, else bin/helm (make helm
// builds it from tools/helm/go.mod), else one on PATH.
func helmBin(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if abs, err := filepath.Abs(filepath.Join("..", "bin", "helm")); err == nil {
		if _, err := os.Stat(abs); err == nil {
			return abs
		}
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	t.Fatal("helm not found: make helm (or make test) builds it into bin/helm from tools/helm/go.mod; or set HELM")
	return ""
}

// runHelm runs helm with its cache, config and data in a temporary
// directory, and returns its standard output and error.
func runHelm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// checkNATSDependency checks that Chart.yaml's one dependency, the
// official NATS chart, is the one vendored in charts/nats (helm template
// and install use it from there, without helm dependency build), at the
// version Chart.yaml names, with its licence, and small.
func checkNATSDependency(t *testing.T) {
	t.Helper()
	var meta, vendored map[string]any
	readYAML(t, filepath.Join(chartDir, "Chart.yaml"), &meta)
	readYAML(t, filepath.Join(chartDir, "charts", "nats", "Chart.yaml"), &vendored)
	deps, _ := meta["dependencies"].([]any)
	if len(deps) != 1 {
		t.Fatalf("Chart.yaml has dependencies %v: want the one on the NATS chart", deps)
	}
	dep, _ := deps[0].(map[string]any)
	if dep["name"] != "nats" || dep["repository"] != "https://nats-io.github.io/k8s/helm/charts/" || dep["condition"] != "nats.enabled" {
		t.Errorf("Chart.yaml's dependency %v: want the official nats chart (https://nats-io.github.io/k8s/helm/charts/), condition nats.enabled", dep)
	}
	if vendored["name"] != "nats" || dep["version"] != vendored["version"] {
		t.Errorf("Chart.yaml names nats %v, charts/nats is %v %v: vendor the version named (Chart.yaml says how)", dep["version"], vendored["name"], vendored["version"])
	}
	if _, err := os.Stat(filepath.Join(chartDir, "charts", "nats", "LICENSE")); err != nil {
		t.Errorf("the vendored NATS chart lacks its licence: %v", err)
	}
	var size int64
	_ = filepath.WalkDir(filepath.Join(chartDir, "charts"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return err
	})
	if size > 1<<20 {
		t.Errorf("charts/ holds %d bytes: want only the NATS chart's sources (~150 KB)", size)
	}
}

// valuesFile writes values for -f.
func valuesFile(t *testing.T, v map[string]any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir(): helm splits -f at commas, which a test's
	// name may hold.
	dir, err := os.MkdirTemp("", "values")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// object is what the tests read of a rendered manifest.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       yaml.Node         `yaml:"spec"`
}

type deploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Strategy struct {
		Type string `yaml:"type"`
	} `yaml:"strategy"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			Containers                    []container `yaml:"containers"`
			Volumes                       []volume    `yaml:"volumes"`
			TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Exec *struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	// Kubernetes' defaults when 0: 10, 1 and 3.
	PeriodSeconds    int `yaml:"periodSeconds"`
	TimeoutSeconds   int `yaml:"timeoutSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

// noticed is the longest a kubelet takes to mark the pod unready once the
// probe's endpoint fails: failureThreshold periods, the last one timing out.
func (p *probe) noticed() time.Duration {
	period, timeout, failures := cmp.Or(p.PeriodSeconds, 10), cmp.Or(p.TimeoutSeconds, 1), cmp.Or(p.FailureThreshold, 3)
	return time.Duration(period*failures+timeout) * time.Second
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

// release is a rendered chart: the gateway's objects, and those of the
// bundled NATS chart (charts/nats), told apart by their helm.sh/chart label.
type release struct {
	objects []object
	nats    []object
}

func parseRelease(t *testing.T, manifests string) *release {
	t.Helper()
	r := &release{}
	dec := yaml.NewDecoder(strings.NewReader(manifests))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parsing the rendered manifests: %v\n%s", err, manifests)
		}
		switch {
		case o.Kind == "":
		case strings.HasPrefix(o.Metadata.Labels["helm.sh/chart"], "nats-"):
			r.nats = append(r.nats, o)
		default:
			r.objects = append(r.objects, o)
		}
	}
	return r
}

// get returns the object of a kind, or nil; it fails when there are more.
func (r *release) get(t *testing.T, kind string) *object {
	t.Helper()
	var found *object
	for i := range r.objects {
		if r.objects[i].Kind == kind {
			if found != nil {
				t.Fatalf("more than one %s", kind)
			}
			found = &r.objects[i]
		}
	}
	return found
}

func (r *release) kinds() []string {
	var out []string
	for _, o := range r.objects {
		out = append(out, o.Kind)
	}
	slices.Sort(out)
	return out
}

// natsCluster is what checkNATS finds of the bundled NATS chart's objects.
type natsCluster struct {
	replicas int
	// opts is the servers' config file as nats-server reads it.
	opts *server.Options
	// service is the client Service: the one not headless.
	service string
}

// checkNATS checks the bundled NATS chart's objects as a cluster would run
// them: a StatefulSet whose servers read the chart's config file (parsed
// by nats-server itself) with JetStream storing on a volume claim of each
// pod and routes to every replica, and the gateway's storage.nats.url
// naming that chart's client Service, in the release's namespace, on its
// client port.
func checkNATS(t *testing.T, r *release, cfg *config.Config, namespace string) *natsCluster {
	t.Helper()
	var sts *object
	services := map[string]object{}
	configMaps := map[string]object{}
	for i, o := range r.nats {
		switch o.Kind {
		case "StatefulSet":
			if sts != nil {
				t.Fatal("the NATS chart renders more than one StatefulSet")
			}
			sts = &r.nats[i]
		case "Service":
			services[o.Metadata.Name] = o
		case "ConfigMap":
			configMaps[o.Metadata.Name] = o
		}
	}
	if sts == nil {
		t.Fatalf("the NATS chart renders no StatefulSet (%d objects)", len(r.nats))
	}
	var spec struct {
		Replicas    int    `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Template    struct {
			Spec struct {
				Containers []struct {
					Name         string   `yaml:"name"`
					Args         []string `yaml:"args"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []volume `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	}
	if err := sts.Spec.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	out := &natsCluster{replicas: spec.Replicas}
	if len(spec.Template.Spec.Containers) == 0 || spec.Template.Spec.Containers[0].Name != "nats" {
		t.Fatalf("the NATS StatefulSet's first container is not nats: %+v", spec.Template.Spec.Containers)
	}
	nc := spec.Template.Spec.Containers[0]
	mounts := map[string]string{}
	for _, m := range nc.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	i := slices.Index(nc.Args, "--config")
	if i < 0 || i+1 >= len(nc.Args) {
		t.Fatalf("nats-server args %q: want --config FILE", nc.Args)
	}
	confPath := nc.Args[i+1]
	var confMap string
	for _, v := range spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.Name == mounts[filepath.Dir(confPath)] {
			confMap = v.ConfigMap.Name
		}
	}
	conf, ok := configMaps[confMap].Data[filepath.Base(confPath)]
	if !ok {
		t.Fatalf("nats-server reads %s, which is in no ConfigMap of the NATS chart", confPath)
	}
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SERVER_NAME", sts.Metadata.Name+"-0") // the pod's name, as the container's env sets it
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats-server cannot read the NATS chart's config: %v\n%s", err, conf)
	}
	out.opts = opts
	if !opts.JetStream {
		t.Error("the bundled NATS servers run without JetStream")
	}
	claimed := false
	for _, c := range spec.VolumeClaimTemplates {
		claimed = claimed || c.Metadata.Name == mounts[opts.StoreDir]
	}
	if !claimed {
		t.Errorf("JetStream's store_dir %q is not on a volume claim of each pod (mounts %v)", opts.StoreDir, mounts)
	}
	if out.replicas > 1 && len(opts.Routes) != out.replicas {
		t.Errorf("the NATS config routes to %d servers, the StatefulSet runs %d", len(opts.Routes), out.replicas)
	}

	// The client Service: not headless, with the client port.
	var port int
	for name, svc := range services {
		var s struct {
			ClusterIP string `yaml:"clusterIP"`
			Ports     []struct {
				Name string `yaml:"name"`
				Port int    `yaml:"port"`
			} `yaml:"ports"`
		}
		if err := svc.Spec.Decode(&s); err != nil {
			t.Fatal(err)
		}
		if s.ClusterIP == "None" || name == spec.ServiceName {
			continue
		}
		out.service = name
		for _, p := range s.Ports {
			if p.Name == "nats" {
				port = p.Port
			}
		}
	}
	if out.service == "" || port == 0 {
		t.Fatalf("the NATS chart renders no client Service with a nats port (%v)", slices.Collect(maps.Keys(services)))
	}
	if want := fmt.Sprintf("nats://%s.%s.svc:%d", out.service, namespace, port); cfg.Storage.NATS.URL != want {
		t.Errorf("storage.nats.url %q: want the bundled NATS chart's Service, %s", cfg.Storage.NATS.URL, want)
	}
	if port != opts.Port {
		t.Errorf("the NATS Service's port %d is not the servers' client port %d", port, opts.Port)
	}
	if cfg.Storage.NATS.Replicas > out.replicas {
		t.Errorf("storage.nats.replicas %d: more copies than the %d NATS servers", cfg.Storage.NATS.Replicas, out.replicas)
	}
	return out
}

// rendered is what checkRelease finds in a release: the gateway's config
// as the pod would load it, and the parts tests look at.
type rendered struct {
	cfg        *config.Config
	nats       *natsCluster // the bundled NATS chart's, when rendered
	configText string
	deployment deploymentSpec
	container  container
	env        map[string]string
	// secretRefs are the Secrets the env and volumes read.
	secretRefs map[string]bool
}

// checkRelease checks what every rendering must hold, and returns what it
// found. existing stands for a Secret the user made (existingSecret).
func checkRelease(t *testing.T, r *release, namespace string, existing map[string]string) *rendered {
	t.Helper()
	out := &rendered{env: map[string]string{}, secretRefs: map[string]bool{}}
	d := r.get(t, "Deployment")
	if d == nil {
		t.Fatalf("no Deployment: %v", r.kinds())
	}
	if err := d.Spec.Decode(&out.deployment); err != nil {
		t.Fatal(err)
	}
	pod := out.deployment.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want the gateway", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	out.container = c

	// Probes on the API port: ready on /readyz, alive on /healthz.
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" {
		t.Fatalf("container ports %+v, want one named http", c.Ports)
	}
	for _, p := range []struct {
		name string
		p    *probe
		path string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"startupProbe", c.StartupProbe, "/healthz"}} {
		if p.p == nil || p.p.HTTPGet == nil || p.p.HTTPGet.Path != p.path || p.p.HTTPGet.Port != "http" {
			got := "none"
			if p.p != nil && p.p.HTTPGet != nil {
				got = "GET " + p.p.HTTPGet.Path + " on port " + p.p.HTTPGet.Port
			}
			t.Errorf("%s: %s, want GET %s on port http", p.name, got, p.path)
		}
	}
	for k, v := range out.deployment.Selector.MatchLabels {
		if pod.Metadata.Labels[k] != v {
			t.Errorf("the Deployment's selector %s=%s does not match its pods' labels %v", k, v, pod.Metadata.Labels)
		}
	}
	svc := r.get(t, "Service")
	if svc == nil {
		t.Fatal("no Service")
	}
	var svcSpec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	if err := svc.Spec.Decode(&svcSpec); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(svcSpec.Selector, out.deployment.Selector.MatchLabels) || len(svcSpec.Ports) != 1 || svcSpec.Ports[0].TargetPort != "http" {
		t.Errorf("Service selects %v on %+v: want the Deployment's pods (%v) on port http", svcSpec.Selector, svcSpec.Ports, out.deployment.Selector.MatchLabels)
	}
	if pod.Metadata.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a changed config would not roll the pods")
	}

	// Secrets: the chart's, or the user's.
	secrets := map[string]map[string]string{}
	for _, o := range r.objects {
		if o.Kind == "Secret" {
			secrets[o.Metadata.Name] = o.StringData
		}
	}
	secret := func(name, key string) (string, bool) {
		out.secretRefs[name] = true
		if data, ok := secrets[name]; ok {
			v, ok := data[key]
			return v, ok
		}
		v, ok := existing[key]
		return v, ok
	}

	// The environment the container gets.
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out.env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secret(ref.Name, ref.Key)
			switch {
			case ok:
				out.env[e.Name] = v
			case !ref.Optional:
				t.Errorf("env %s: Secret %s has no key %s, and it is not optional: the pod would not start", e.Name, ref.Name, ref.Key)
			}
		}
	}

	// The config file: the ConfigMap mounted where --config points.
	var configMap, configPath string
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil {
			configMap = v.ConfigMap.Name
			configPath = mounts[v.Name]
		}
	}
	if i := slices.Index(c.Args, "--config"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != configPath || !slices.Contains(c.Args, "serve") {
		t.Errorf("args %q: want serve --config %s (the ConfigMap's mount)", c.Args, configPath)
	}
	var cm *object
	for i := range r.objects {
		if r.objects[i].Kind == "ConfigMap" && r.objects[i].Metadata.Name == configMap {
			cm = &r.objects[i]
		}
	}
	if cm == nil {
		t.Fatalf("the pod mounts ConfigMap %q, which the chart does not make", configMap)
	}
	out.configText = cm.Data[filepath.Base(configPath)]
	file := filepath.Join(t.TempDir(), "understudy.yaml")
	if err := os.WriteFile(file, []byte(out.configText), 0o600); err != nil {
		t.Fatal(err)
	}
	// What the gateway does at start: the image's environment, then the
	// pod's, over the file.
	env := imageEnv(t, "Dockerfile")
	for k, v := range out.env {
		env[k] = v
	}
	asked := map[string]bool{}
	cfg, err := config.Load(file, func(k string) (string, bool) {
		asked[k] = true
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("the gateway would not start: %v\n%s", err, out.configText)
	}
	out.cfg = cfg
	checkUnknownEnv(t, "the container", out.env, asked)

	// Files the config names must be in the pod: a Secret's item mounted
	// there. Validate cannot see the pod's files; it checks the rest.
	podFiles := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, it := range v.Secret.Items {
			if _, ok := secret(v.Secret.SecretName, it.Key); !ok {
				t.Errorf("volume %s: Secret %s has no key %s", v.Name, v.Secret.SecretName, it.Key)
			}
			podFiles[filepath.Join(mounts[v.Name], it.Path)] = true
		}
	}
	for _, f := range []string{cfg.Storage.NATS.CredsFile, cfg.Storage.NATS.CAFile, cfg.Storage.NATS.CertFile, cfg.Storage.NATS.KeyFile} {
		if f != "" && !podFiles[f] {
			t.Errorf("the config names %s, which no volume puts in the pod (%v)", f, podFiles)
		}
	}
	checkStopping(t, out.deployment, c, cfg)
	if len(r.nats) > 0 {
		out.nats = checkNATS(t, r, cfg, namespace)
	}
	if err := cfg.Validate(); err != nil {
		for _, e := range unwrapAll(err) {
			var fe *config.FieldError
			if errors.As(e, &fe) && strings.HasPrefix(fe.Msg, "cannot read /etc/understudy/") {
				continue // in the pod, checked above
			}
			t.Errorf("the gateway's config does not validate: %v", e)
		}
	}
	// Keys stay out of the ConfigMap.
	for _, data := range secrets {
		for k, v := range data {
			if len(v) >= 4 && strings.Contains(out.configText, v) {
				t.Errorf("the ConfigMap holds the Secret's %s", k)
			}
		}
	}
	return out
}

// checkStopping checks a stopping pod's timeline: the gateway serves on
// (gateway.shutdown_delay) until the readiness probe has seen its 503, and
// the kubelet waits out the preStop sleep, that delay and the drain
// (gateway.shutdown_timeout) before it kills the container.
func checkStopping(t *testing.T, d deploymentSpec, c container, cfg *config.Config) {
	t.Helper()
	if c.ReadinessProbe != nil {
		if seen := c.ReadinessProbe.noticed(); cfg.Gateway.ShutdownDelay <= seen {
			t.Errorf("gateway.shutdown_delay %v: want more than the readiness probe takes to see a 503 (%v), or the Service sends requests to a closed port", cfg.Gateway.ShutdownDelay, seen)
		}
	}
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Exec != nil {
		if cmd := l.PreStop.Exec.Command; len(cmd) == 2 && cmd[0] == "sleep" {
			n, err := strconv.Atoi(cmd[1])
			if err != nil {
				t.Fatalf("preStop %q: want sleep SECONDS", cmd)
			}
			preStop = time.Duration(n) * time.Second
		}
	}
	grace := 30 * time.Second // Kubernetes' default
	if g := d.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if need := preStop + cfg.Gateway.ShutdownDelay + cfg.Gateway.ShutdownTimeout; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v: want at least preStop %v + gateway.shutdown_delay %v + shutdown_timeout %v, or the kubelet kills the gateway mid-drain",
			grace, preStop, cfg.Gateway.ShutdownDelay, cfg.Gateway.ShutdownTimeout)
	}
}

func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// TestHelmLint checks the vendored NATS chart against Chart.yaml, then
// runs helm lint on the chart as it is, which must not warn, and helm lint
// --strict under each scenario's values.
func TestHelmLint(t *testing.T) {
	checkNATSDependency(t)
	stdout, stderr, err := runHelm(t, "lint", chartDir, "--set", "gateway.apiKeys={k}")
	if err != nil {
		t.Fatalf("helm lint %s: %v\n%s%s", chartDir, err, stdout, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ERROR]") {
			t.Errorf("helm lint: %s", line)
		}
	}
	for name, values := range helmScenarios {
		stdout, stderr, err := runHelm(t, "lint", "--strict", chartDir, "-f", valuesFile(t, values.values))
		if err != nil {
			t.Errorf("%s: helm lint --strict: %v\n%s%s", name, err, stdout, stderr)
		}
	}
}

// helmScenario is a set of values and what its rendering must show.
type helmScenario struct {
	values   map[string]any
	existing map[string]string // the existingSecret's keys, if any
	check    func(t *testing.T, r *release, got *rendered)
}

var helmScenarios = map[string]helmScenario{
	// The default: two replicas on the bundled 3-node NATS cluster.
	"bundled nats": {
		values: map[string]any{
			"gateway": map[string]any{"apiKeys": []string{"sk-client-1", "sk-client-2"}},
			"teacher": map[string]any{"apiKey": "sk-teacher-secret"},
			"admin":   map[string]any{"token": "admin-secret"},
		},
		check: func(t *testing.T, r *release, got *rendered) {
			if got.deployment.Replicas != 2 {
				t.Errorf("replicas %d, want 2", got.deployment.Replicas)
			}
			n := got.cfg.Storage.NATS
			if got.cfg.Storage.Backend != "nats" || n.URL != "nats://rel-nats.ns.svc:4222" || n.Replicas != 3 {
				t.Errorf("storage %s on %q with %d copies: want nats on the bundled chart's Service rel-nats with 3", got.cfg.Storage.Backend, n.URL, n.Replicas)
			}
			if got.nats == nil || got.nats.replicas != 3 || !got.nats.opts.JetStream || got.nats.service != "rel-nats" {
				t.Errorf("bundled NATS %+v: want the NATS chart's StatefulSet of 3 servers with JetStream, behind Service rel-nats", got.nats)
			}
			if got.cfg.Teacher.APIKey != "sk-teacher-secret" || !slices.Equal(got.cfg.Gateway.APIKeys, []string{"sk-client-1", "sk-client-2"}) || got.cfg.Admin.Token != "admin-secret" {
				t.Errorf("teacher key %q, client keys %q, admin token %q: want them from the Secret", got.cfg.Teacher.APIKey, got.cfg.Gateway.APIKeys, got.cfg.Admin.Token)
			}
			if got.cfg.Gateway.ShutdownDelay != 15*time.Second || got.container.Lifecycle != nil {
				t.Errorf("gateway.shutdown_delay %v, lifecycle %+v: want values.yaml's 15s, and no preStop sleep (the delay does its job)", got.cfg.Gateway.ShutdownDelay, got.container.Lifecycle)
			}
			if got.cfg.Listen != ":8080" || got.container.Ports[0].ContainerPort != 8080 {
				t.Errorf("listen %q, container port %d: want :8080 both", got.cfg.Listen, got.container.Ports[0].ContainerPort)
			}
			a := got.deployment.Template.Metadata.Annotations
			if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != "8080" || a["prometheus.io/path"] != "/metrics" {
				t.Errorf("pod annotations %v: want Prometheus's scrape annotations on 8080 /metrics", a)
			}
			if r.get(t, "PodDisruptionBudget") == nil || r.get(t, "PersistentVolumeClaim") != nil || r.get(t, "ServiceMonitor") != nil {
				t.Errorf("objects %v: want a PodDisruptionBudget, no PersistentVolumeClaim, no ServiceMonitor", r.kinds())
			}
		},
	},
	// NATS run elsewhere, a Secret of the user's, a credentials file.
	"external nats, existing secret, creds": {
		values: map[string]any{
			"nats":           map[string]any{"enabled": false},
			"existingSecret": "understudy-keys",
			"storage": map[string]any{"nats": map[string]any{
				"url": "nats://nats-a:4222,nats://nats-b:4222,nats://nats-c:4222", "replicas": 3,
				"auth": map[string]any{"type": "creds"},
			}},
		},
		existing: map[string]string{"UNDERSTUDY_GATEWAY_API_KEYS": "sk-client", "OPENAI_API_KEY": "sk-teacher", "nats.creds": "-----BEGIN NATS USER JWT-----"},
		check: func(t *testing.T, r *release, got *rendered) {
			if r.get(t, "Secret") != nil {
				t.Error("the chart makes a Secret though existingSecret is set")
			}
			if len(r.nats) > 0 {
				t.Errorf("nats.enabled false renders %d objects of the NATS chart", len(r.nats))
			}
			if !maps.Equal(boolKeys(got.secretRefs), map[string]string{"understudy-keys": ""}) {
				t.Errorf("the pod reads Secrets %v, want understudy-keys only", got.secretRefs)
			}
			n := got.cfg.Storage.NATS
			if n.URL != "nats://nats-a:4222,nats://nats-b:4222,nats://nats-c:4222" || n.CredsFile != "/etc/understudy/nats/nats.creds" {
				t.Errorf("storage.nats url %q creds_file %q: want the external servers and the mounted creds", n.URL, n.CredsFile)
			}
		},
	},
	"token auth": {
		values: map[string]any{
			"gateway": map[string]any{"apiKeys": []string{"sk-client"}},
			"storage": map[string]any{"nats": map[string]any{"auth": map[string]any{"type": "token", "token": "nats-token-secret"}}},
		},
		check: func(t *testing.T, r *release, got *rendered) {
			if got.cfg.Storage.NATS.Token != "nats-token-secret" {
				t.Errorf("storage.nats.token %q: want the Secret's", got.cfg.Storage.NATS.Token)
			}
		},
	},
	"password auth": {
		values: map[string]any{
			"gateway": map[string]any{"apiKeys": []string{"sk-client"}},
			"storage": map[string]any{"nats": map[string]any{"auth": map[string]any{"type": "password", "user": "gw", "password": "nats-password-secret"}}},
		},
		check: func(t *testing.T, r *release, got *rendered) {
			n := got.cfg.Storage.NATS
			if n.User != "gw" || n.Password != "nats-password-secret" {
				t.Errorf("storage.nats user %q password %q: want gw and the Secret's", n.User, n.Password)
			}
		},
	},
	// One replica on Badger, its data on a volume.
	"badger with persistence": {
		values: map[string]any{
			"replicaCount": 1,
			"gateway":      map[string]any{"apiKeys": []string{"sk-client"}},
			"storage":      map[string]any{"backend": "badger"},
			"persistence":  map[string]any{"enabled": true},
			"nats":         map[string]any{"enabled": false},
		},
		check: func(t *testing.T, r *release, got *rendered) {
			if got.cfg.Storage.Backend != "badger" || got.deployment.Replicas != 1 || got.deployment.Strategy.Type != "Recreate" {
				t.Errorf("backend %s, %d replicas, strategy %q: want badger, 1, Recreate (one process owns the directory)", got.cfg.Storage.Backend, got.deployment.Replicas, got.deployment.Strategy.Type)
			}
			pvc := r.get(t, "PersistentVolumeClaim")
			data := ""
			for _, m := range got.container.VolumeMounts {
				if m.MountPath == got.cfg.DataDir {
					data = m.Name
				}
			}
			ok := false
			for _, v := range got.deployment.Template.Spec.Volumes {
				ok = ok || v.Name == data && v.PersistentVolumeClaim != nil && pvc != nil && v.PersistentVolumeClaim.ClaimName == pvc.Metadata.Name
			}
			if !ok {
				t.Errorf("data_dir %s is not on the chart's PersistentVolumeClaim (objects %v)", got.cfg.DataDir, r.kinds())
			}
			if r.get(t, "PodDisruptionBudget") != nil {
				t.Error("a PodDisruptionBudget for one replica would block every node drain")
			}
		},
	},
	// The config: values and a ServiceMonitor.
	"config and service monitor": {
		values: map[string]any{
			"gateway": map[string]any{"apiKeys": []string{"sk-client"}},
			"config": map[string]any{
				"trainer": map[string]any{"min_pairs": 500},
				"storage": map[string]any{"ttl": "240h", "nats": map[string]any{"lease_ttl": "5s"}},
				"domains": []any{map[string]any{"name": "spam", "system_prompt_prefix": "Classify this e-mail"}},
			},
			"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		},
		check: func(t *testing.T, r *release, got *rendered) {
			c := got.cfg
			if c.Trainer.MinPairs != 500 || c.Storage.TTL.Hours() != 240 || len(c.Domains) != 1 ||
				c.Storage.NATS.LeaseTTL.Seconds() != 5 || c.Storage.NATS.Replicas != 3 || c.Storage.NATS.URL == "" {
				t.Errorf("trainer.min_pairs %d, storage.ttl %v, domains %v, storage.nats %+v: want config: merged over the chart's settings",
					c.Trainer.MinPairs, c.Storage.TTL, c.Domains, c.Storage.NATS)
			}
			sm := r.get(t, "ServiceMonitor")
			if sm == nil {
				t.Fatal("no ServiceMonitor")
			}
			var spec struct {
				Selector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"selector"`
				Endpoints []struct {
					Port string `yaml:"port"`
					Path string `yaml:"path"`
				} `yaml:"endpoints"`
			}
			if err := sm.Spec.Decode(&spec); err != nil {
				t.Fatal(err)
			}
			svc := r.get(t, "Service")
			for k, v := range spec.Selector.MatchLabels {
				if svc.Metadata.Labels[k] != v {
					t.Errorf("the ServiceMonitor selects %s=%s, not a label of the Service (%v)", k, v, svc.Metadata.Labels)
				}
			}
			if len(spec.Endpoints) != 1 || spec.Endpoints[0].Port != "http" || spec.Endpoints[0].Path != "/metrics" {
				t.Errorf("ServiceMonitor endpoints %+v: want /metrics on port http", spec.Endpoints)
			}
		},
	},
}

func boolKeys(m map[string]bool) map[string]string {
	out := map[string]string{}
	for k := range m {
		out[k] = ""
	}
	return out
}

// TestHelmTemplate renders the chart, with the vendored NATS chart,
// under each scenario's values, and checks the manifests as a cluster and
// the gateway would read them: probes, Service, Secret references, the
// config the pod would load, through config.Load and Validate, and the
// NATS cluster it points at (checkNATS). Values that cannot work fail at
// helm template with a message naming the value.
func TestHelmTemplate(t *testing.T) {
	chart := chartDir
	for name, sc := range helmScenarios {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := runHelm(t, "template", "rel", chart, "--namespace", "ns", "-f", valuesFile(t, sc.values))
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, stderr)
			}
			r := parseRelease(t, stdout)
			got := checkRelease(t, r, "ns", sc.existing)
			sc.check(t, r, got)
		})
	}

	// A release whose name has "nats" in it: the NATS chart then names
	// its Service after the release alone.
	t.Run("release named nats", func(t *testing.T) {
		stdout, stderr, err := runHelm(t, "template", "nats-prod", chart, "--namespace", "ns", "--set", "gateway.apiKeys={k}")
		if err != nil {
			t.Fatalf("helm template: %v\n%s", err, stderr)
		}
		got := checkRelease(t, parseRelease(t, stdout), "ns", nil)
		if got.nats == nil || got.nats.service != "nats-prod" || got.cfg.Storage.NATS.URL != "nats://nats-prod.ns.svc:4222" {
			t.Errorf("storage.nats.url %q: want the NATS chart's Service nats-prod", got.cfg.Storage.NATS.URL)
		}
	})

	for _, tc := range []struct {
		name string
		set  []string
		want string
	}{
		{"badger with replicas", []string{"gateway.apiKeys={k}", "storage.backend=badger"}, "storage.backend badger keeps the pair log inside one pod"},
		{"badger with the bundled nats", []string{"gateway.apiKeys={k}", "storage.backend=badger", "replicaCount=1"}, "storage.backend badger does not use the bundled NATS cluster: set nats.enabled=false"},
		{"no nats url", []string{"gateway.apiKeys={k}", "nats.enabled=false"}, "storage.nats.url is required when nats.enabled is false"},
		{"no client keys", nil, "gateway.apiKeys is required"},
		{"more copies than servers", []string{"gateway.apiKeys={k}", "storage.nats.replicas=5"}, "more than the bundled NATS cluster's 3 servers"},
		{"unknown auth", []string{"gateway.apiKeys={k}", "storage.nats.auth.type=jwt"}, "storage.nats.auth.type must be none, creds, token or password"},
		{"creds without a file", []string{"gateway.apiKeys={k}", "storage.nats.auth.type=creds"}, "storage.nats.auth.creds"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			args := []string{"template", "rel", chart}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, stderr, err := runHelm(t, args...)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Errorf("helm template with %v: %v, %s: want a failure saying %q", tc.set, err, stderr, tc.want)
			}
		})
	}
}
