package gateway_test

// Field conditions: what real teachers and clients do that takes a naive
// gateway down. Each test reproduces one and checks what the client sees.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/storage"
)

const okCompletion = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ham"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// keepAliveTeacher serves a fixed chat completion on addr ("" for any
// port) and closes connections idle for idle, as uvicorn (vLLM's server)
// does after 5 s.
func keepAliveTeacher(t *testing.T, addr string, idle time.Duration) (*http.Server, string) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{IdleTimeout: idle, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(okCompletion))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String()
}

// burst sends n chat requests at once and counts the answers by status (0:
// no HTTP answer).
func burst(h *harness, n int) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := h.gw.Chat.Completions.New(context.Background(), chatParams("hello"))
			code := 200
			var apiErr *openai.Error
			switch {
			case errors.As(err, &apiErr):
				code = apiErr.StatusCode
			case err != nil:
				code = 0
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return codes
}

// TestStaleKeepAliveConnections: a teacher that closes idle connections
// sooner than the gateway drops them, and one that restarts, must not cost
// a single request nor trip the breaker. The gateway keeps idle connections
// longer than the teacher here on purpose, so every one is stale.
func TestStaleKeepAliveConnections(t *testing.T) {
	teacher, addr := keepAliveTeacher(t, "", 150*time.Millisecond)
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = "http://" + addr + "/v1"
		c.Teacher.MaxIdleConnDuration = time.Minute
	})
	if codes := burst(h, 32); codes[200] != 32 {
		t.Fatalf("first burst: %v", codes)
	}
	time.Sleep(400 * time.Millisecond) // the teacher closes every idle connection
	if codes := burst(h, 32); codes[200] != 32 {
		t.Errorf("burst after the teacher closed its idle connections: %v, want all 200", codes)
	}
	if n := h.metric("understudy_teacher_retries_total", map[string]string{"reason": "stale_connection"}); n == 0 {
		t.Errorf("no stale_connection retries counted: the test did not reuse a closed connection")
	}

	// A restart closes every connection at once, idle or not.
	teacher.Close()
	keepAliveTeacher(t, addr, time.Minute)
	if codes := burst(h, 32); codes[200] != 32 {
		t.Errorf("burst after a teacher restart: %v, want all 200", codes)
	}
	if n := h.metric("understudy_teacher_breaker_transitions_total", nil); n != 0 {
		t.Errorf("the breaker changed state %v times for a healthy teacher", n)
	}
}

// TestConnectionLimitIsBackPressure: more concurrent requests than
// teacher.max_conns wait for a connection; those that wait too long get a
// 503 with Retry-After; none of it is the teacher's failure.
func TestConnectionLimitIsBackPressure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue time.Duration
	}{{"queued", 5 * time.Second}, {"queue timeout", 50 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, teachersim.Config{Latency: 200 * time.Millisecond}, func(c *config.Config) {
				c.Teacher.MaxConns = 2
				c.Teacher.QueueTimeout = tc.queue
				c.Teacher.Breaker.ConsecutiveFailures = 1
			})
			codes := burst(h, 12)
			if tc.queue > time.Second {
				if codes[200] != 12 {
					t.Errorf("with room to wait: %v, want all 200", codes)
				}
				return
			}
			if codes[200] < 2 || codes[503] == 0 || codes[200]+codes[503] != 12 {
				t.Errorf("past the queue timeout: %v, want some 200 and the rest 503", codes)
			}
			if h.metric("understudy_teacher_breaker_transitions_total", nil) != 0 {
				t.Errorf("waiting for a connection tripped the breaker")
			}
			if n := h.metric("understudy_teacher_errors_total", map[string]string{"reason": "busy"}); n != float64(codes[503]) {
				t.Errorf("busy errors = %v, want %d", n, codes[503])
			}
			if _, err := h.gw.Chat.Completions.New(context.Background(), chatParams("after the burst")); err != nil {
				t.Errorf("after the burst: %v", err)
			}
		})
	}
	// The 503 itself: Retry-After, the OpenAI error object.
	h := start(t, teachersim.Config{Latency: 300 * time.Millisecond}, func(c *config.Config) {
		c.Teacher.MaxConns = 1
		c.Teacher.QueueTimeout = 20 * time.Millisecond
	})
	go h.gw.Chat.Completions.New(context.Background(), chatParams("hold the only connection"))
	time.Sleep(100 * time.Millisecond)
	status, hdr, body := h.raw("POST", "/v1/chat/completions", []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`), nil)
	if status != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"teacher_busy"`) {
		t.Errorf("no free connection: %d %v %s, want 503 teacher_busy with Retry-After", status, hdr, body)
	}
}

// TestPartialFailureServesTheRest: a teacher failing 30% of requests keeps
// serving the other 70%; the breaker opens on a failure ratio, not on a
// streak that high throughput always produces.
func TestPartialFailureServesTheRest(t *testing.T) {
	h := start(t, teachersim.Config{ErrorRate: 0.3, Seed: 7}, nil)
	total := 0
	codes := map[int]int{}
	// 3,000 requests hold several streaks of 5 failures: enough to trip a
	// consecutive-failures breaker (into 30 s of 503 for everyone).
	for range 75 {
		for k, v := range burst(h, 40) {
			codes[k] += v
			total += v
		}
	}
	if ok := float64(codes[200]) / float64(total); ok < 0.6 {
		t.Errorf("answers %v: %.0f%% succeeded, want about 70%%", codes, 100*ok)
	}
	if n := h.metric("understudy_teacher_breaker_transitions_total", map[string]string{"state": "open"}); n != 0 {
		t.Errorf("the breaker opened %v times at a 30%% error rate", n)
	}
	// A teacher failing everything still opens it, once failures are half
	// of the window's requests.
	h.simConfig(map[string]any{"error_rate": 1})
	for i := 0; h.metric("understudy_teacher_breaker_state", nil) != 2; i++ {
		if i == 80 {
			t.Fatalf("breaker still closed after %d failed requests", 40*i)
		}
		burst(h, 40)
	}
}

// TestTornStreams: a teacher stream that ends without "data: [DONE]", with
// its last line torn, gives the client an API error (not a JSON syntax
// error) and logs no pair; an answer cut off at max_tokens reaches the
// client as sent but is not logged; a complete stream is logged.
func TestTornStreams(t *testing.T) {
	chunk := func(content string) string {
		return `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}` + "\n\n"
	}
	stop := `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
	length := strings.Replace(stop, `"stop"`, `"length"`, 1)
	bodies := map[string]string{
		"torn line":   chunk("pe") + `data: {"id":"c","object":"chat.compl`,
		"no [DONE]":   chunk("co") + stop,
		"max_tokens":  chunk("ru") + length + "data: [DONE]\n\n",
		"complete":    chunk("ham") + stop + "data: [DONE]\n\n",
		"json cutoff": `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"sp"},"finish_reason":"length"}]}`,
	}
	upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "json cutoff") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, bodies["json cutoff"])
			return
		}
		var body string
		for name, s := range bodies {
			if strings.Contains(string(b), name) {
				body = s
			}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
	})}
	ln := listen(t)
	go upstream.Serve(ln)
	defer upstream.Close()
	h := startWith(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = "http://" + ln.Addr().String() + "/v1"
	}, &storage.Options{})

	params := func(name string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{
			Model: "m", Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Label it."), openai.UserMessage(name)},
		}
	}
	domain := option.WithHeader("X-Understudy-Domain", "torn")
	if c, err := h.gw.Chat.Completions.New(context.Background(), params("json cutoff"), domain); err != nil || c.Choices[0].Message.Content != "sp" {
		t.Errorf("an answer cut off at max_tokens reaches the client as sent: %v", err)
	}
	for _, name := range []string{"torn line", "no [DONE]", "max_tokens", "complete"} {
		s := h.gw.Chat.Completions.NewStreaming(context.Background(), params(name), domain)
		var text strings.Builder
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Delta.Content)
			}
		}
		var streamErr *ssestream.StreamError
		if want := map[string]string{"complete": "ham", "max_tokens": "ru"}[name]; want != "" {
			if s.Err() != nil || text.String() != want {
				t.Errorf("%s: %q, %v", name, text.String(), s.Err())
			}
			continue
		}
		if !errors.As(s.Err(), &streamErr) || !strings.Contains(streamErr.Error(), "teacher_stream_incomplete") && !strings.Contains(streamErr.Error(), "broke off") {
			t.Errorf("%s: stream error %T %v, want the SDK's StreamError from the gateway's error event", name, s.Err(), s.Err())
		}
	}
	// A stream's pair is logged after its last byte reached the client:
	// wait for it, then make sure no other came.
	var labels []string
	read := func() bool {
		if err := h.pairs.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		labels = nil
		if err := h.pairs.Pairs(context.Background(), "torn", func(p storage.Pair) error {
			labels = append(labels, p.Label)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return len(labels) > 0
	}
	waitFor(t, read)
	time.Sleep(50 * time.Millisecond)
	read()
	if fmt.Sprint(labels) != "[ham]" {
		t.Errorf("logged labels %v, want only the complete answer's [ham]", labels)
	}
	if n := h.metric("understudy_teacher_errors_total", map[string]string{"reason": "incomplete_stream"}); n != 2 {
		t.Errorf("incomplete_stream errors = %v, want 2", n)
	}
}

// TestSlowClients: connections that trickle their headers are cut off after
// read_header_timeout; connections past gateway.max_conns get a clear 503;
// the gateway keeps serving throughout.
func TestSlowClients(t *testing.T) {
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Gateway.ReadHeaderTimeout = 300 * time.Millisecond
		c.Gateway.MaxConns = 40
	})
	addr := strings.TrimPrefix(strings.TrimSuffix(h.gwURL, "/v1"), "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 40 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: app")
		conns = append(conns, c)
	}
	waitFor(t, func() bool { return h.metric("understudy_gateway_open_connections", nil) == 40 })

	// The 41st connection is refused with an answer, not left hanging.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("over the cap: %v, want a 503 answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"too_many_connections"`) {
		t.Errorf("over the cap: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// The slow ones are cut off at read_header_timeout, freeing the slots.
	began := time.Now()
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(c)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("partial requests held %v, want about read_header_timeout (300ms)", d)
	}
	waitFor(t, func() bool { return h.metric("understudy_gateway_open_connections", nil) == 0 })
	if _, err := h.gw.Chat.Completions.New(context.Background(), chatParams("still serving")); err != nil {
		t.Errorf("after the flood: %v", err)
	}
}

// TestFileDescriptorExhaustion: running out of file descriptors makes
// accept fail; the gateway waits it out instead of returning from Serve
// (the harness fails the test if Serve returns an error), and serves again
// once descriptors are free.
func TestFileDescriptorExhaustion(t *testing.T) {
	h := start(t, teachersim.Config{}, nil)
	addr := strings.TrimPrefix(strings.TrimSuffix(h.gwURL, "/v1"), "http://")
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip("no RLIMIT_NOFILE:", err)
	}
	inUse := openFDs(t)
	low := old
	low.Cur = uint64(inUse + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	var conns []net.Conn
	for range 200 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the dialling side ran out first
		}
		conns = append(conns, c)
	}
	waitFor(t, func() bool {
		return h.metric("understudy_gateway_accept_errors_total", map[string]string{"reason": "fd_limit"}) > 0
	})
	for _, c := range conns {
		c.Close()
	}
	restore()
	waitFor(t, func() bool {
		_, err := h.gw.Chat.Completions.New(context.Background(), chatParams("after the fd limit"))
		return err == nil
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTeacherResponseNotLogged: a malformed teacher response is logged as a
// failure, without its raw headers (a Set-Cookie, say).
func TestTeacherResponseNotLogged(t *testing.T) {
	ln := listen(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64<<10)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nSet-Cookie: session=TEACHER-SECRET\r\nContent-Length: abc\r\n\r\n"))
			c.Close()
		}
	}()
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = "http://" + ln.Addr().String() + "/v1"
	})
	if _, err := h.gw.Chat.Completions.New(context.Background(), chatParams("x")); err == nil {
		t.Fatal("a malformed teacher response was answered 200")
	}
	log := h.log.String()
	if !strings.Contains(log, "teacher exchange failed") || strings.Contains(log, "TEACHER-SECRET") {
		t.Errorf("log shows the failure: %v; shows the teacher's raw headers: %v", strings.Contains(log, "teacher exchange failed"), strings.Contains(log, "TEACHER-SECRET"))
	}
}

// TestLargeHeaders: headers up to 8 KiB are served; larger ones get 431
// with the OpenAI error object and the gateway's headers. (The connection
// then lingers, so a client still sending reads the 431 rather than a
// reset; loopback's large socket buffers hide the reset either way.)
func TestLargeHeaders(t *testing.T) {
	h := start(t, teachersim.Config{}, nil)
	for _, tc := range []struct {
		size   int
		status string
	}{{6 << 10, "200"}, {20 << 10, "431"}} {
		c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(h.gwURL, "/v1"), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
			"X-Big: " + strings.Repeat("a", tc.size) + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%d-byte header: reading the answer: %v", tc.size, err)
		}
		b, err := io.ReadAll(resp.Body)
		c.Close()
		if err != nil || !strings.HasPrefix(resp.Status, tc.status) {
			t.Fatalf("%d-byte header: %s %s, %v; want %s", tc.size, resp.Status, b, err, tc.status)
		}
		if tc.status == "431" {
			if e := openAIError(t, b); !strings.Contains(e.Message, "too large") {
				t.Errorf("431 message %q", e.Message)
			}
			if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Understudy-Route") != "none" {
				t.Errorf("431 headers %v", resp.Header)
			}
		}
	}
}

// TestOwnErrorsCarryHeaders: the gateway's own errors carry x-request-id
// and X-Understudy-Route none, as its answers do.
func TestOwnErrorsCarryHeaders(t *testing.T) {
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Gateway.APIKeys = []string{"sk-gw"}
		c.Gateway.MaxBodySize = 1 << 10
	})
	key := map[string]string{"Authorization": "Bearer sk-gw"}
	for _, tc := range []struct {
		method, path string
		body         []byte
		header       map[string]string
		status       int
	}{
		{"GET", "/nowhere", nil, key, 404},
		{"POST", "/v1/chat/completions", []byte(`{"model":1}`), key, 400},
		{"POST", "/v1/chat/completions", []byte(`{"model":"` + strings.Repeat("m", 2<<10) + `"}`), key, 413},
		{"POST", "/v1/chat/completions", []byte(`{}`), nil, 401},
		{"PUT", "/healthz", nil, key, 405},
	} {
		status, hdr, _ := h.raw(tc.method, tc.path, tc.body, tc.header)
		if status != tc.status || !strings.HasPrefix(hdr.Get("X-Request-Id"), "req_") || hdr.Get("X-Understudy-Route") != "none" {
			t.Errorf("%s %s: %d, x-request-id %q, route %q; want %d with both", tc.method, tc.path, status,
				hdr.Get("X-Request-Id"), hdr.Get("X-Understudy-Route"), tc.status)
		}
	}
}

// TestStalledStreams: a client that stops reading a stream is dropped after
// gateway.write_timeout, and a teacher that stalls mid-stream is cut off
// after teacher.idle_timeout; either way the teacher's connection is
// released, not held until teacher.timeout (600 s here).
func TestStalledStreams(t *testing.T) {
	released := make(chan string, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		event := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" + strings.Repeat("x", 64<<10) + "\"}}]}\n\n"
		if strings.Contains(r.URL.Path, "stall") || r.Header.Get("X-Test") == "teacher-stalls" {
			// One short event, then silence: a long first event could
			// arrive in pieces slower than the idle timeout on a busy
			// machine, which is a different failure.
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done() // silent until the gateway lets go
			released <- "teacher stalled"
			return
		}
		for { // a client that stops reading: write until the gateway lets go
			if _, err := io.WriteString(w, event); err != nil {
				released <- "client stalled"
				return
			}
			w.(http.Flusher).Flush()
		}
	})}
	ln := listen(t)
	go srv.Serve(ln)
	defer srv.Close()
	h := start(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = "http://" + ln.Addr().String() + "/v1"
		c.Teacher.IdleTimeout = time.Second
		c.Gateway.WriteTimeout = time.Second
	})
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	addr := strings.TrimPrefix(strings.TrimSuffix(h.gwURL, "/v1"), "http://")
	for _, tc := range []struct{ name, header string }{{"client stalls", ""}, {"teacher stalls", "X-Test: teacher-stalls\r\n"}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + tc.header +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		if tc.name == "teacher stalls" {
			// Read on: the stream ends with the gateway's error event.
			got, _ := io.ReadAll(c)
			if !strings.Contains(string(got), "teacher_stream_incomplete") {
				t.Errorf("%s: the client got no error event (%d bytes)", tc.name, len(got))
			}
		} // else: never read
		select {
		case what := <-released:
			t.Logf("%s: released (%s)", tc.name, what)
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the teacher's connection is still held", tc.name)
		}
		c.Close()
	}
}
