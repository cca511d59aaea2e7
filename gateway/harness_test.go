package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/storage"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http's idle keep-alive connections of the test clients.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// fasthttp's own cleaners sleep out their interval (up to 10 s)
		// after the server stopped or the last connection closed, then exit.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		// fasthttp keeps one process-wide goroutine refreshing its Date header.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*TCPDialer).tcpAddrsClean"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
	)
}

const spamSystem = "Classify this e-mail as spam or ham. Answer with one word."

var spamTask = teachersim.Task{Name: "spam", System: spamSystem, Examples: []teachersim.Example{
	{Text: "WIN a FREE cruise, click now!!!", Label: "spam"},
	{Text: "Lunch moved to 1pm, see you there.", Label: "ham"},
	{Text: "Cheap meds, no prescription needed", Label: "spam"},
	{Text: "Here are the minutes from Tuesday's meeting.", Label: "ham"},
}}

// harness runs teacher-sim and a gateway in front of it on loopback, with an
// openai-go client for each.
type harness struct {
	t      testing.TB
	simURL string // teacher-sim base URL, ending in /v1
	gwURL  string // gateway base URL, ending in /v1
	reg    *prometheus.Registry
	cfg    *config.Config
	gw     openai.Client // through the gateway
	direct openai.Client // straight to teacher-sim
	pairs  *storage.DB   // the pair log, when started with one
	log    *syncBuffer   // the gateway's log, at debug level
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start launches teacher-sim with sim and a gateway configured by edit
// (after defaults and the teacher URL are set); both stop at test cleanup.
func start(t testing.TB, sim teachersim.Config, edit func(*config.Config)) *harness {
	t.Helper()
	return startWith(t, sim, edit, nil)
}

// startWith is start with a real pair log opened with so (its Registry,
// and its Dir when empty, are filled in) when so is not nil.
func startWith(t testing.TB, sim teachersim.Config, edit func(*config.Config), so *storage.Options) *harness {
	t.Helper()
	return startRouted(t, sim, edit, so, nil)
}

// startRouted is startWith with rt, when not nil, as the gateway's router.
func startRouted(t testing.TB, sim teachersim.Config, edit func(*config.Config), so *storage.Options, rt gateway.Router) *harness {
	t.Helper()
	if sim.Tasks == nil {
		sim.Tasks = []teachersim.Task{spamTask}
	}
	srv, err := teachersim.New(sim)
	if err != nil {
		t.Fatal(err)
	}
	simLn := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan error, 1)
	go func() { simDone <- srv.Serve(ctx, simLn) }()

	h := &harness{t: t, simURL: "http://" + simLn.Addr().String() + "/v1", reg: prometheus.NewRegistry()}
	cfg := config.Default()
	cfg.Teacher.URL = h.simURL
	cfg.Teacher.APIKey = "sk-teacher"
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	h.cfg = cfg
	h.log = &syncBuffer{}
	deps := gateway.Deps{Logger: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})), Registry: h.reg, Router: rt}
	if so != nil {
		if so.Dir == "" {
			so.Dir = t.TempDir()
		}
		so.Registry, so.Logger = h.reg, deps.Logger
		db, err := storage.Open(*so)
		if err != nil {
			t.Fatal(err)
		}
		h.pairs, deps.Pairs, deps.Responses, deps.Known = db, db, db, db
	}
	gw, err := gateway.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	gwLn := listen(t)
	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Serve(ctx, gwLn) }()
	h.gwURL = "http://" + gwLn.Addr().String() + "/v1"
	t.Cleanup(func() {
		cancel()
		if err := <-gwDone; err != nil {
			t.Errorf("gateway Serve: %v", err)
		}
		if err := <-simDone; err != nil {
			t.Errorf("teacher-sim Serve: %v", err)
		}
		if h.pairs != nil {
			h.pairs.Close()
		}
		http.DefaultClient.CloseIdleConnections()
	})
	key := "sk-client"
	if len(cfg.Gateway.APIKeys) > 0 {
		key = cfg.Gateway.APIKeys[0]
	}
	h.gw = newClient(h.gwURL, key)
	h.direct = newClient(h.simURL, sim.APIKey)
	return h
}

func newClient(base, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(base+"/"), option.WithAPIKey(key), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}))
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// simConfig changes teacher-sim's settings at run time.
func (h *harness) simConfig(settings map[string]any) {
	h.t.Helper()
	body, _ := json.Marshal(settings)
	resp, err := http.Post(strings.TrimSuffix(h.simURL, "/v1")+"/sim/config", "application/json", bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		h.t.Fatalf("sim config: status %d", resp.StatusCode)
	}
}

// raw sends a request to the gateway and returns status, headers and body.
func (h *harness) raw(method, path string, body []byte, header map[string]string) (int, http.Header, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(h.gwURL, "/v1")+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// metric returns the value of a counter or gauge (summed over series whose
// labels include the given ones), or a histogram's sample count.
func (h *harness) metric(name string, labels map[string]string) float64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}
