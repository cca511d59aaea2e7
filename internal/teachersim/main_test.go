package teachersim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sentimentSystem = "Classify the sentiment of the review. Answer with positive or negative only."

// testServer is a Server serving on a loopback port for one test.
type testServer struct {
	*Server
	base   string // "http://127.0.0.1:PORT"
	client *http.Client
	stop   func() // shuts the server down and waits for Serve
}

// start serves cfg on loopback until the test ends.
func start(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	tr := &http.Transport{}
	ts := &testServer{Server: s, base: "http://" + ln.Addr().String(), client: &http.Client{Transport: tr}}
	stopped := false
	ts.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		tr.CloseIdleConnections()
	}
	t.Cleanup(ts.stop)
	return ts
}

// loadTasks loads the fixtures: sentiment (system prompt from its file) and
// topic (default system prompt), in that order.
func loadTasks(t *testing.T) []Task {
	t.Helper()
	var tasks []Task
	for _, name := range []string{"sentiment", "topic"} {
		task, err := LoadTask(name, "testdata/"+name+".jsonl", "")
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, task)
	}
	return tasks
}

// do sends a request with an optional JSON body and returns the response
// with its body read.
func (ts *testServer) do(t *testing.T, method, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

// sdk returns an official OpenAI client for the server.
func (ts *testServer) sdk(key string) openai.Client {
	return openai.NewClient(
		option.WithBaseURL(ts.base+"/v1/"),
		option.WithAPIKey(key),
		option.WithMaxRetries(0),
		option.WithHTTPClient(ts.client),
	)
}

// mustJSON encodes v for a request body.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decode decodes a JSON response body into a generic value.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// apiErr is the OpenAI error object of an error response.
type apiErr struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeErr(t *testing.T, b []byte) apiErr {
	t.Helper()
	var e apiErr
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("decoding error body %s: %v", b, err)
	}
	if e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("error body %s: want message and type", b)
	}
	return e
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

// chatBody is a chat completions request body.
func chatBody(t *testing.T, system, user string, extra map[string]any) string {
	t.Helper()
	var msgs []map[string]any
	if system != "" {
		msgs = append(msgs, map[string]any{"role": "system", "content": system})
	}
	msgs = append(msgs, map[string]any{"role": "user", "content": user})
	body := map[string]any{"model": "teacher-sim", "messages": msgs}
	for k, v := range extra {
		body[k] = v
	}
	return mustJSON(t, body)
}
