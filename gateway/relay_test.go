package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/understudy-dev/understudy/config"
	"github.com/understudy-dev/understudy/gateway"
	"github.com/understudy-dev/understudy/internal/teachersim"
	"github.com/understudy-dev/understudy/internal/testnet"
)

// upstream is a teacher on loopback that speaks the parts of OpenAI's API
// the gateway relays unread, and tells what it received.
type upstream struct {
	t   *testing.T
	srv *httptest.Server
	// seen is signalled by the test once the client read an event of
	// /v1/threads/runs.
	seen chan struct{}

	mu        sync.Mutex
	auth      map[string]string // path → the Authorization header it saw
	protocols map[string]string // path → the Sec-WebSocket-Protocol header it saw
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{t: t, seen: make(chan struct{}), auth: map[string]string{}, protocols: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/files", u.files)
	mux.HandleFunc("POST /v1/audio/transcriptions", u.echo)
	mux.HandleFunc("POST /v1/audio/speech", u.speech)
	mux.HandleFunc("GET /v1/files/{id}/content", u.speech)
	mux.HandleFunc("HEAD /v1/files/{id}/content", u.speech)
	mux.HandleFunc("POST /v1/threads/runs", u.events)
	mux.HandleFunc("GET /v1/realtime", u.realtime)
	mux.HandleFunc("/", u.describe)
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) saw(r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.auth[r.URL.Path] = r.Header.Get("Authorization")
	u.protocols[r.URL.Path] = r.Header.Get("Sec-WebSocket-Protocol")
}

func (u *upstream) authOf(path string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.auth[path]
}

// files hashes the file of a multipart upload as it arrives.
func (u *upstream) files(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	mr, err := r.MultipartReader()
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	out := map[string]any{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if p.FormName() == "file" {
			h := sha256.New()
			n, err := io.Copy(h, p)
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			out["bytes"], out["sha256"], out["filename"] = n, hex.EncodeToString(h.Sum(nil)), p.FileName()
		} else {
			v, _ := io.ReadAll(p)
			out[p.FormName()] = string(v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// echo answers with the body it received, and its Content-Type. (It reads
// the body first: net/http may cut off a request body once the response
// began.)
func (u *upstream) echo(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Received-Content-Type", r.Header.Get("Content-Type"))
	_, _ = w.Write(body)
}

// speechBody is every byte value, 4096 times over (1 MiB).
var speechBody = bytes.Repeat(allBytes(), 4096)

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// speech answers with binary audio: with a Content-Length, or chunked when
// the query says so.
func (u *upstream) speech(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	w.Header().Set("Content-Type", "audio/mpeg")
	if r.URL.Query().Get("chunked") == "" {
		w.Header().Set("Content-Length", strconv.Itoa(len(speechBody)))
	}
	if r.Method == http.MethodHead {
		return
	}
	for b := speechBody; len(b) > 0; b = b[min(len(b), 100_000):] {
		_, _ = w.Write(b[:min(len(b), 100_000)])
		w.(http.Flusher).Flush()
	}
}

// events streams server-sent events, each only once the client has seen
// the one before: a gateway that held them back would never get the next.
func (u *upstream) events(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	w.Header().Set("Content-Type", "text/event-stream")
	for i := range 5 {
		fmt.Fprintf(w, "event: thread.message.delta\ndata: {\"i\":%d}\n\n", i)
		w.(http.Flusher).Flush()
		select {
		case <-u.seen:
		case <-r.Context().Done():
			return
		case <-time.After(30 * time.Second):
			u.t.Errorf("event %d never reached the client: the gateway held it back", i)
			return
		}
	}
	fmt.Fprint(w, "event: done\ndata: [DONE]\n\n")
}

// realtime is a WebSocket echo server that speaks first, as OpenAI's
// Realtime API does with session.created.
func (u *upstream) realtime(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	if r.URL.Query().Get("model") == "refused" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":{"message":"no realtime for you","type":"invalid_request_error","param":null,"code":"refused"}}`)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"realtime"}})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := r.Context()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"session.created"}`)); err != nil {
		return
	}
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// describe answers any other request with what it received.
func (u *upstream) describe(w http.ResponseWriter, r *http.Request) {
	u.saw(r)
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "yes")
	w.WriteHeader(http.StatusTeapot)
	_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
		"body": string(body), "accept_encoding": r.Header.Get("Accept-Encoding")})
}

// startRelay starts a gateway whose teacher is u, with a 1 MiB
// max_body_size.
func startRelay(t *testing.T, u *upstream, edit func(*config.Config)) *harness {
	return start(t, teachersim.Config{}, func(c *config.Config) {
		c.Teacher.URL = u.srv.URL + "/v1"
		c.Gateway.MaxBodySize = config.MiB
		if edit != nil {
			edit(c)
		}
	})
}

// gwRoot is the gateway's address, without /v1.
func (h *harness) gwRoot() string { return strings.TrimSuffix(h.gwURL, "/v1") }

var plainClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}

// TestRelayLargeUpload sends a 64 MiB multipart upload to /v1/files, 64
// times gateway.max_body_size, made up as it is sent. The teacher gets
// every byte (its hash matches), and the gateway never holds the body: the
// memory the whole process allocates while relaying it stays a small
// fraction of its size.
func TestRelayLargeUpload(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)
	const size = 64 << 20

	up := testnet.NewUpload(size, 7)
	req, err := http.NewRequest("POST", h.gwURL+"/files", up.Body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", up.ContentType)
	req.Header.Set("Authorization", "Bearer sk-client")

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	runtime.ReadMemStats(&after)
	var got struct {
		Bytes    int64  `json:"bytes"`
		SHA256   string `json:"sha256"`
		Filename string `json:"filename"`
		Purpose  string `json:"purpose"`
	}
	if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("status %d, body %.300q (%v)", resp.StatusCode, body, err)
	}
	if _, want := up.SHA256(); got.Bytes != size || got.SHA256 != want || got.Filename != "big.jsonl" || got.Purpose != "batch" {
		t.Errorf("the teacher got %d bytes, sha256 %s, file %q, purpose %q; want %d bytes, sha256 %s, big.jsonl, batch",
			got.Bytes, got.SHA256, got.Filename, got.Purpose, size, want)
	}
	if a := u.authOf("/v1/files"); a != "Bearer sk-teacher" {
		t.Errorf("the teacher saw Authorization %q; want its own key", a)
	}
	// Client, gateway and teacher share this process: what all three
	// allocated while 64 MiB went through is the bound.
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("relaying %d MiB allocated %.1f MiB in the whole process; heap in use %.1f → %.1f MiB",
		size>>20, float64(alloc)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20))
	if alloc > size/8 {
		t.Errorf("relaying a %d MiB upload allocated %d MiB: the body was buffered", size>>20, alloc>>20)
	}
	if n := h.metric("understudy_gateway_requests_total", map[string]string{"endpoint": "files", "code": "200"}); n != 1 {
		t.Errorf("requests_total{endpoint=files,code=200} = %v; want 1", n)
	}
}

// TestRelayBinary passes binary bodies both ways byte for byte, with their
// Content-Type, whatever their framing.
func TestRelayBinary(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)

	t.Run("audio upload", func(t *testing.T) {
		audio := bytes.Repeat(allBytes(), 3*4096+1) // 3 MiB and a bit: over max_body_size
		status, hdr, body := h.raw("POST", "/v1/audio/transcriptions", audio, map[string]string{"Content-Type": "audio/wav"})
		if status != 200 || !bytes.Equal(body, audio) {
			t.Errorf("status %d, %d bytes back, equal %v; want 200 and the %d bytes sent", status, len(body), bytes.Equal(body, audio), len(audio))
		}
		if ct := hdr.Get("X-Received-Content-Type"); ct != "audio/wav" {
			t.Errorf("the teacher got Content-Type %q; want audio/wav", ct)
		}
	})
	t.Run("chunked audio upload", func(t *testing.T) {
		audio := bytes.Repeat(allBytes(), 100)
		req, _ := http.NewRequest("POST", h.gwURL+"/audio/transcriptions", io.MultiReader(bytes.NewReader(audio))) // no length: chunked
		req.Header.Set("Content-Type", "audio/wav")
		resp, err := plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 200 || !bytes.Equal(body, audio) {
			t.Errorf("status %d, %d bytes back; want 200 and the %d bytes sent", resp.StatusCode, len(body), len(audio))
		}
	})
	for _, tc := range []struct{ name, method, path string }{
		{"speech with a length", "POST", "/v1/audio/speech"},
		{"speech chunked", "POST", "/v1/audio/speech?chunked=1"},
		{"file content", "GET", "/v1/files/file-abc/content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := h.raw(tc.method, tc.path, []byte(`{"model":"tts-1","input":"hi","voice":"alloy"}`), nil)
			if status != 200 || hdr.Get("Content-Type") != "audio/mpeg" || !bytes.Equal(body, speechBody) {
				t.Errorf("status %d, Content-Type %q, %d bytes, equal %v; want 200, audio/mpeg and the teacher's %d bytes",
					status, hdr.Get("Content-Type"), len(body), bytes.Equal(body, speechBody), len(speechBody))
			}
		})
	}
	t.Run("HEAD keeps the length", func(t *testing.T) {
		req, _ := http.NewRequest("HEAD", h.gwURL+"/files/file-abc/content", nil)
		resp, err := plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(speechBody)) {
			t.Errorf("status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, len(speechBody))
		}
	})
}

// TestRelayUnknown relays any path and method under /v1 with its query,
// headers and body, and brings back the teacher's status, headers and
// body; paths outside /v1 stay the gateway's 404.
func TestRelayUnknown(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)
	for _, tc := range []struct {
		name, method, path, body string
		wantPath, wantQuery      string
	}{
		{"batches", "POST", "/v1/batches", `{"input_file_id":"file-1"}`, "/v1/batches", ""},
		{"a query", "GET", "/v1/files?purpose=batch&limit=2", "", "/v1/files", "purpose=batch&limit=2"},
		{"delete", "DELETE", "/v1/vector_stores/vs_1", "", "/v1/vector_stores/vs_1", ""},
		{"stored chat completions", "GET", "/v1/chat/completions?limit=1", "", "/v1/chat/completions", "limit=1"},
		{"a path the gateway never heard of", "PATCH", "/v1/some/new/thing", `x`, "/v1/some/new/thing", ""},
		{"escapes stay in the path", "GET", "/v1/files/a%20b%3Fc=d%0D%0AX:%201", "", "/v1/files/a b?c=d\r\nX: 1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, h.gwRoot()+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Accept-Encoding", "identity")
			resp, err := plainClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			var got struct{ Method, Path, Query, Body, Accept_Encoding string }
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Upstream") != "yes" {
				t.Fatalf("status %d, headers %v, body %.300q; want the teacher's 418 and its headers", resp.StatusCode, resp.Header, body)
			}
			if got.Method != tc.method || got.Path != tc.wantPath || got.Query != tc.wantQuery || got.Body != tc.body || got.Accept_Encoding != "identity" {
				t.Errorf("the teacher got %+v; want %s %s ?%s body %q Accept-Encoding identity", got, tc.method, tc.wantPath, tc.wantQuery, tc.body)
			}
		})
	}
	status, _, body := h.raw("GET", "/v2/files", nil, nil)
	if status != 404 || !bytes.Contains(body, []byte("Invalid URL")) {
		t.Errorf("GET /v2/files: status %d, %.200q; want the gateway's own 404", status, body)
	}
}

// TestRelayEventStream streams the events of an endpoint the gateway does
// not know one by one: the teacher sends the next event only after the
// client read the one before.
func TestRelayEventStream(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)
	req, _ := http.NewRequest("POST", h.gwURL+"/threads/runs", strings.NewReader(`{"assistant_id":"asst_1","stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, ct)
	}
	br := bufio.NewReader(resp.Body)
	var events []string
	for {
		var ev strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if err != io.EOF || ev.Len() > 0 {
					t.Fatalf("reading event %d: %v (got %q)", len(events), err, ev.String())
				}
				break
			}
			if line == "\n" {
				break
			}
			ev.WriteString(line)
		}
		if ev.Len() == 0 {
			break
		}
		events = append(events, ev.String())
		if strings.HasPrefix(ev.String(), "event: done") {
			continue
		}
		u.seen <- struct{}{}
	}
	want := []string{}
	for i := range 5 {
		want = append(want, fmt.Sprintf("event: thread.message.delta\ndata: {\"i\":%d}\n", i))
	}
	want = append(want, "event: done\ndata: [DONE]\n")
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("events %q; want %q", events, want)
	}
}

// TestRelayWebSocket talks to the teacher's Realtime API through the
// gateway: the teacher's first message, an echo of text and binary
// messages, the negotiated subprotocol, and the teacher's key on the
// upgrade. An upgrade the teacher refuses comes back as its answer.
func TestRelayWebSocket(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(h.gwURL, "http") + "/realtime?model=gpt-realtime"
	c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {"Bearer sk-client"}, "OpenAI-Beta": {"realtime=v1"}},
		Subprotocols: []string{"realtime"},
	})
	if err != nil {
		t.Fatalf("dial: %v (response %+v)", err, resp)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if c.Subprotocol() != "realtime" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("subprotocol %q, headers %v; want realtime and a request id", c.Subprotocol(), resp.Header)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != `{"type":"session.created"}` {
		t.Fatalf("first message %q, %v; want the teacher's session.created", msg, err)
	}
	for i, m := range []struct {
		typ websocket.MessageType
		msg []byte
	}{
		{websocket.MessageText, []byte(`{"type":"response.create"}`)},
		{websocket.MessageBinary, allBytes()},
		{websocket.MessageText, bytes.Repeat([]byte("a"), 200_000)},
	} {
		if err := c.Write(ctx, m.typ, m.msg); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != m.typ || !bytes.Equal(got, m.msg) {
			t.Errorf("message %d: echo of %d bytes (%v, %v); want the %d bytes sent", i, len(got), typ, err, len(m.msg))
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("closing: %v", err)
	}
	if a := u.authOf("/v1/realtime"); a != "Bearer sk-teacher" {
		t.Errorf("the teacher saw Authorization %q; want its own key", a)
	}

	_, resp, err = websocket.Dial(ctx, strings.Replace(wsURL, "gpt-realtime", "refused", 1), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refused upgrade: err %v, response %+v; want the teacher's 403", err, resp)
	}
	if body := readAll(t, resp); !bytes.Contains(body, []byte("no realtime for you")) {
		t.Errorf("refused upgrade body %q; want the teacher's", body)
	}
	if n := h.metric("understudy_gateway_requests_total", map[string]string{"endpoint": "realtime", "code": "101"}); n != 1 {
		t.Errorf("requests_total{endpoint=realtime,code=101} = %v; want 1", n)
	}
}

// TestRelayWebSocketClientKey passes the client's key on an upgrade when
// teacher.pass_client_authorization is set.
func TestRelayWebSocketClientKey(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, func(c *config.Config) { c.Teacher.PassClientAuthorization = true; c.Teacher.APIKey = "" })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.gwURL, "http")+"/realtime",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer sk-client"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close(websocket.StatusNormalClosure, "")
	if a := u.authOf("/v1/realtime"); a != "Bearer sk-client" {
		t.Errorf("the teacher saw Authorization %q; want the client's", a)
	}
}

// TestRelayWebSocketBrowserKey: a browser cannot set Authorization on an
// upgrade, so it sends its gateway key as a subprotocol, as OpenAI's
// Realtime API takes one; the gateway accepts it, and the teacher gets its
// own key and the subprotocols without the gateway's key.
func TestRelayWebSocketBrowserKey(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, func(c *config.Config) { c.Gateway.APIKeys = []string{"sk-gw"} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(h.gwURL, "http") + "/realtime"
	if _, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"realtime", "openai-insecure-api-key.sk-wrong"}}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("a wrong key as a subprotocol: %v, %+v; want 401", err, resp)
	}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"realtime", "openai-insecure-api-key.sk-gw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(ctx); err != nil || c.Subprotocol() != "realtime" {
		t.Fatalf("first message: %v, subprotocol %q", err, c.Subprotocol())
	}
	c.Close(websocket.StatusNormalClosure, "")
	u.mu.Lock()
	auth, protocols := u.auth["/v1/realtime"], u.protocols["/v1/realtime"]
	u.mu.Unlock()
	if auth != "Bearer sk-teacher" || protocols != "realtime" {
		t.Errorf("the teacher saw Authorization %q and subprotocols %q; want its own key and realtime alone", auth, protocols)
	}
}

// TestRelayEndpointLabelBounded sends requests to made-up paths: they are
// counted, but under endpoint="other", never under a value of their own.
func TestRelayEndpointLabelBounded(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, nil)
	for i := range 50 {
		p := fmt.Sprintf("/v1/x%08x/%d", rand.Uint32(), i)
		if status, _, _ := h.raw("GET", p, nil, nil); status != http.StatusTeapot {
			t.Fatalf("GET %s: status %d; want the teacher's 418", p, status)
		}
	}
	h.raw("GET", "/v1/batches/batch_1", nil, nil)
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "understudy_gateway_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" {
					endpoints[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if len(endpoints) != 2 || endpoints["other"] != 50 || endpoints["batches"] != 1 {
		t.Errorf("requests by endpoint: %v; want other: 50, batches: 1", endpoints)
	}
}

// TestLearnedBodyLimits keeps max_body_size on the bodies the gateway
// reads: a chat request over the limit is refused with 413 (chunked too),
// and never reaches the teacher.
func TestLearnedBodyLimits(t *testing.T) {
	h := start(t, teachersim.Config{}, func(c *config.Config) { c.Gateway.MaxBodySize = 64 * config.KiB })
	big := []byte(`{"model":"teacher-sim","messages":[{"role":"user","content":"` + strings.Repeat("x", 100<<10) + `"}]}`)
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(big)
		if chunked {
			r = io.MultiReader(r)
		}
		req, _ := http.NewRequest("POST", h.gwURL+"/chat/completions", r)
		resp, err := plainClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != 413 || !bytes.Contains(body, []byte("request_too_large")) {
			t.Errorf("chunked %v: status %d, %.200q; want 413 request_too_large", chunked, resp.StatusCode, body)
		}
	}
	if n := h.simRequests(); n != 0 {
		t.Errorf("the teacher got %d requests; want none", n)
	}
}

// TestRelayAbortedUploadsDoNotTrip: clients that hang up in the middle of
// an upload are not the teacher's failures. After more of them than the
// breaker's consecutive-failure limit, the next request still reaches the
// teacher.
func TestRelayAbortedUploadsDoNotTrip(t *testing.T) {
	u := newUpstream(t)
	h := startRelay(t, u, func(c *config.Config) { c.Teacher.Breaker.ConsecutiveFailures = 1 })
	addr := strings.TrimPrefix(h.gwRoot(), "http://")
	for i := range 3 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: %s\r\nContent-Type: audio/wav\r\nContent-Length: %d\r\n\r\n", addr, 4<<20)
		if _, err := conn.Write(bytes.Repeat(allBytes(), 1024)); err != nil { // 256 KiB of the 4 MiB
			t.Fatal(err)
		}
		conn.Close()
		// The gateway answers the next request only once it is done with
		// this one; wait for the request to be counted.
		for deadline := time.Now().Add(10 * time.Second); h.metric("understudy_gateway_requests_total", map[string]string{"endpoint": "audio"}) < float64(i+1); {
			if time.Now().After(deadline) {
				t.Fatalf("aborted upload %d was never counted", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	status, _, body := h.raw("POST", "/v1/audio/transcriptions", allBytes(), map[string]string{"Content-Type": "audio/wav"})
	if status != 200 || !bytes.Equal(body, allBytes()) {
		t.Errorf("after 3 aborted uploads: status %d, %.200q; want the teacher's echo", status, body)
	}
	if s := h.metric("understudy_teacher_breaker_state", nil); s != 0 {
		t.Errorf("breaker_state = %v; want 0 (closed)", s)
	}
	if n := h.metric("understudy_teacher_errors_total", nil); n != 0 {
		t.Errorf("teacher errors_total = %v; want 0: the clients failed, not the teacher", n)
	}
}

// TestRelayWebSocketShutdown stops the gateway while a Realtime session is
// open: Serve returns, and the client sees its connection end.
func TestRelayWebSocketShutdown(t *testing.T) {
	u := newUpstream(t)
	cfg := config.Default()
	cfg.Teacher.URL, cfg.Teacher.APIKey = u.srv.URL+"/v1", "sk-teacher"
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	gw, err := gateway.New(cfg, gateway.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- gw.Serve(ctx, ln) }()

	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(wctx, "ws://"+ln.Addr().String()+"/v1/realtime", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if _, _, err := c.Read(wctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	stop()
	select {
	case err := <-served:
		t.Logf("Serve returned %v after the stop", time.Since(stopped))
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return with a WebSocket session open")
	}
	if _, _, err := c.Read(wctx); err == nil {
		t.Error("the session went on after the gateway stopped")
	}
}
